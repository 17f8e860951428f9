package webmail

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"postern/mailbox/maildir"
)

// chromium finds Debian's headless-capable browser; the test is skipped
// without it.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped with -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on this machine; .ci/run installs it")
	}
	t.Skip("no chromium on this machine")
	return ""
}

// browserContext starts the headless browser at path for one test,
// ended with it, and bounds the whole run (not a wait: each step waits
// for its element).
func browserContext(t *testing.T, path string) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

// browserLogin logs u in through the login form and waits for the
// logged-in page (the message list).
func browserLogin(e *testEnv, u testUser) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Navigate(e.srv.URL+"/mail/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=user]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=user]`), u.name),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), u.pass),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`header.top`)),
	)
}

// TestBrowserReadAndSend drives a real headless Chromium through the
// webmail: log in, open a hostile message (no script may run: no dialog
// opens), then compose and send a message.
func TestBrowserReadAndSend(t *testing.T) {
	path := chromium(t)
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, hostile)
	e.deliver(alice, maildir.Inbox, simpleMessage("Bob <bob@example.test>", "Browser test", "Hello from Bob."))

	ctx := browserContext(t, path)

	var mu sync.Mutex
	var dialogs []string
	err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			mu.Lock()
			dialogs = append(dialogs, d.Message)
			mu.Unlock()
			// Not from the listener itself: it must not run commands.
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	hostileUID := e.messages(alice, maildir.Inbox)[0].UID
	err = chromedp.Do(ctx,
		browserLogin(e, alice),
		chromedp.Click(chromedp.Search(`//td[@class="subject"]/a[text()="Browser test"]`)),
		chromedp.WaitVisible(chromedp.CSS(`h1.subject`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`h1.subject`)))
	if err != nil {
		t.Fatal(err)
	}
	bodyText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`pre.text`)))
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Browser test" || !strings.Contains(bodyText, "Hello from Bob.") {
		t.Fatalf("message page: %q %q", subject, bodyText)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/mail/msg?f=INBOX&uid="+utoa(hostileUID)),
		chromedp.WaitVisible(chromedp.CSS(`div.html`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if shot := os.Getenv("WEBMAIL_SCREENSHOT"); shot != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(shot, png, 0o644)
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/mail/compose"),
		chromedp.WaitVisible(chromedp.CSS(`form.compose`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=to]`), "bob@example.test"),
		chromedp.SendKeys(chromedp.CSS(`input[name=subject]`), "Sent from Chromium"),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=body]`), "Typed in a real browser."),
		chromedp.Click(chromedp.CSS(`form.compose button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	notice, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`p.flash`)))
	if err != nil {
		t.Fatal(err)
	}
	if notice != "Message sent." {
		t.Fatalf("after send: %q", notice)
	}
	out := e.lastSent()
	if strings.Join(out.Rcpts, ",") != "bob@example.test" || !strings.Contains(string(out.Msg), "Typed in a real browser.") {
		t.Fatalf("sent: %+v", out)
	}
	// The address book in the browser: an entry added through its form,
	// then its nickname typed in To reaches the entry's address.
	err = chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/mail/abook/new"),
		chromedp.WaitVisible(chromedp.CSS(`form.abook`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=nick]`), "bobby"),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "Bob Browser"),
		chromedp.SendKeys(chromedp.CSS(`input[name=addr]`), "bob@example.test"),
		chromedp.Click(chromedp.CSS(`form.abook button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.abook`)),
		chromedp.Navigate(e.srv.URL+"/mail/compose"),
		chromedp.WaitVisible(chromedp.CSS(`form.compose`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=to]`), "bobby"),
		chromedp.SendKeys(chromedp.CSS(`input[name=subject]`), "To a nickname"),
		chromedp.Click(chromedp.CSS(`form.compose button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if out := e.lastSent(); strings.Join(out.Rcpts, ",") != "bob@example.test" || !strings.Contains(string(out.Msg), "Bob Browser") {
		t.Fatalf("sent to the nickname: %+v", out.Rcpts)
	}
	for _, m := range e.messages(alice, maildir.Inbox) {
		if unread(&m) {
			t.Errorf("message %d not seen after the browser opened it", m.UID)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialogs) > 0 {
		t.Fatalf("script ran in the browser: dialogs %q", dialogs)
	}
}

// TestBrowserHTMLCompose types in the rich text editor, makes words bold
// with the toolbar and sends: the message has its HTML version with the
// bold words, and its text version. No dialog opens, and the page runs
// under the webmail's Content-Security-Policy (an inline script would be
// refused, so the editor working shows it is the static file).
func TestBrowserHTMLCompose(t *testing.T) {
	path := chromium(t)
	e := newEnv(t)
	ctx := browserContext(t, path)
	err := doSteps(t, ctx,
		browserLogin(e, alice),
		chromedp.Navigate(e.srv.URL+"/mail/compose?format=html"),
		chromedp.WaitVisible(chromedp.CSS(`div.editor`)),
		chromedp.WaitNotVisible(chromedp.CSS(`textarea[name=body]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=to]`), "bob@example.test"),
		chromedp.SendKeys(chromedp.CSS(`input[name=subject]`), "Rich from Chromium"),
		chromedp.Click(chromedp.CSS(`div.editor`)),
		chromedp.SendKeys(chromedp.CSS(`div.editor`), "Plain start "),
		chromedp.Click(chromedp.CSS(`button.tool-bold`)),
		chromedp.SendKeys(chromedp.CSS(`div.editor`), "bold words"),
		chromedp.Click(chromedp.CSS(`button.tool-bold`)),
		chromedp.SendKeys(chromedp.CSS(`div.editor`), " end"),
		chromedp.Click(chromedp.CSS(`form.compose button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	notice, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`p.flash`)))
	if err != nil || notice != "Message sent." {
		t.Fatalf("after send: %q %v", notice, err)
	}
	text, htm := alternative(t, parseSent(t, e.lastSent().Msg))
	if !strings.Contains(htm, "<b>bold words</b>") && !strings.Contains(htm, "<strong>bold words</strong>") {
		t.Fatalf("no bold in the HTML sent:\n%s", htm)
	}
	if !strings.Contains(text, "Plain start bold words end") {
		t.Fatalf("text part %q", text)
	}
	// Switched to plain text on the page, the same message goes as
	// text/plain only.
	err = doSteps(t, ctx,
		chromedp.Navigate(e.srv.URL+"/mail/compose?format=html"),
		chromedp.WaitVisible(chromedp.CSS(`div.editor`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=to]`), "bob@example.test"),
		chromedp.SendKeys(chromedp.CSS(`div.editor`), "now plain"),
		chromedp.SetValue(chromedp.CSS(`select[name=format]`), "plain"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("select[name=format]").dispatchEvent(new Event("change"))`),
		chromedp.WaitVisible(chromedp.CSS(`textarea[name=body]`)),
		chromedp.Click(chromedp.CSS(`form.compose button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if ent := parseSent(t, e.lastSent().Msg); ent.ctype != "text/plain" || !strings.Contains(ent.body, "now plain") {
		t.Fatalf("after switching to plain: %+v", ent)
	}
}

// doSteps runs the steps one by one, each bounded, and on a failure says
// which step and shows the page it failed on.
func doSteps(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	t.Helper()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, on the unbounded context
		return err
	}
	for i, step := range steps {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := chromedp.Do(sctx, step)
		cancel()
		if err != nil {
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			return fmt.Errorf("step %d: %w\npage: %s", i, err, page)
		}
	}
	return nil
}
