package webmail

import (
	"context"
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

// TestBrowserReadAndSend drives a real headless Chromium through the
// webmail: log in, open a hostile message (no script may run: no dialog
// opens), then compose and send a message.
func TestBrowserReadAndSend(t *testing.T) {
	path := chromium(t)
	e := newEnv(t)
	e.deliver(alice, maildir.Inbox, hostile)
	e.deliver(alice, maildir.Inbox, simpleMessage("Bob <bob@example.test>", "Browser test", "Hello from Bob."))

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
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// A bound on the whole run, not a wait: each step waits for its
	// element.
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

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
		chromedp.Navigate(e.srv.URL+"/mail/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=user]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=user]`), alice.name),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), alice.pass),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.messages`)),
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
