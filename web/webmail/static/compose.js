// compose.js: the rich text editor of the webmail's compose page.
//
// The page works without it: the form's format field is disabled (so a
// browser without script sends plain text from the textarea). This
// script enables the field and, in HTML mode, puts a contenteditable
// area with a small toolbar in place of the textarea; on submit it
// copies the editor's HTML into the hidden "html" field and its text
// into "body". The server sanitizes the HTML and makes the text version
// again itself: nothing here is trusted. It is a static file because the
// page's Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var form = document.querySelector("form.compose");
  if (!form || typeof document.execCommand !== "function") {
    return;
  }
  var format = form.elements.namedItem("format");
  var htmlField = form.elements.namedItem("html");
  var body = form.elements.namedItem("body");
  if (!format || !htmlField || !body) {
    return;
  }
  var textLabel = body.closest("label") || body;

  var toolbar = document.createElement("div");
  toolbar.className = "toolbar";
  toolbar.setAttribute("role", "toolbar");
  toolbar.setAttribute("aria-label", "Formatting");
  var editor = document.createElement("div");
  editor.className = "editor";
  editor.contentEditable = "true";
  editor.setAttribute("role", "textbox");
  editor.setAttribute("aria-multiline", "true");
  editor.setAttribute("aria-label", "Text");
  var note = document.createElement("p");
  note.className = "note editor-note";
  note.hidden = true;

  var tools = [
    ["bold", "B", "Bold"],
    ["italic", "I", "Italic"],
    ["underline", "U", "Underline"],
    ["insertUnorderedList", "\u2022 List", "Bulleted list"],
    ["insertOrderedList", "1. List", "Numbered list"],
    ["quote", "\u201c Quote", "Quote"],
    ["link", "Link", "Link"],
    ["removeFormat", "Clear", "Remove formatting"]
  ];
  tools.forEach(function (t) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = t[1];
    b.title = t[2];
    b.className = "tool tool-" + t[0];
    // mousedown would move the focus, and the selection, out of the
    // editor before the click.
    b.addEventListener("mousedown", function (e) { e.preventDefault(); });
    b.addEventListener("click", function () { run(t[0]); });
    toolbar.appendChild(b);
  });
  textLabel.parentNode.insertBefore(toolbar, textLabel.nextSibling);
  toolbar.parentNode.insertBefore(editor, toolbar.nextSibling);
  editor.parentNode.insertBefore(note, editor.nextSibling);

  function run(cmd) {
    editor.focus();
    // <b>, <i>, <u> rather than style attributes (which the server drops).
    document.execCommand("styleWithCSS", false, false);
    switch (cmd) {
    case "quote":
      document.execCommand("formatBlock", false, "blockquote");
      break;
    case "link":
      var url = window.prompt("Link address (https://\u2026 or mailto:\u2026)", "https://");
      if (url && /^(https?:\/\/|mailto:)\S+$/i.test(url.trim())) {
        document.execCommand("createLink", false, url.trim());
      }
      break;
    case "removeFormat":
      document.execCommand("removeFormat", false, null);
      document.execCommand("unlink", false, null);
      break;
    default:
      document.execCommand(cmd, false, null);
    }
  }

  // Images are not sent from the editor (the server would drop them):
  // a pasted or dropped file is refused with a word to attach it.
  function refuseFiles(e, data) {
    if (data && data.files && data.files.length > 0) {
      e.preventDefault();
      note.textContent = "Images and files cannot be put in the text; add them as attachments below.";
      note.hidden = false;
    }
  }
  editor.addEventListener("paste", function (e) { refuseFiles(e, e.clipboardData); });
  editor.addEventListener("drop", function (e) { refuseFiles(e, e.dataTransfer); });

  function fromText(text) {
    editor.textContent = "";
    text.replace(/\r\n?/g, "\n").split("\n").forEach(function (line) {
      var d = document.createElement("div");
      if (line === "") {
        d.appendChild(document.createElement("br"));
      } else {
        d.textContent = line;
      }
      editor.appendChild(d);
    });
  }

  function fromHTML(html) {
    // The server sanitized this HTML; a template parses it inert (no
    // script runs, nothing loads) before it enters the page.
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    editor.textContent = "";
    editor.appendChild(document.importNode(tpl.content, true));
  }

  function show(html) {
    textLabel.hidden = html;
    toolbar.hidden = !html;
    editor.hidden = !html;
    if (!html) {
      note.hidden = true;
    }
  }

  format.disabled = false;
  if (format.value === "html") {
    if (htmlField.value.trim() !== "") {
      fromHTML(htmlField.value);
    } else {
      fromText(body.value);
    }
    show(true);
  } else {
    show(false);
  }
  format.addEventListener("change", function () {
    if (format.value === "html") {
      fromText(body.value);
      show(true);
      editor.focus();
    } else {
      body.value = editor.innerText;
      show(false);
    }
  });
  form.addEventListener("submit", function () {
    if (format.value === "html") {
      htmlField.value = editor.innerHTML;
      body.value = editor.innerText;
    } else {
      htmlField.value = "";
    }
  });
})();
