// The console's own script: the CSRF token on every htmx request, focus after a send,
// aria-expanded on the "What the agent saw" buttons. No inline scripts anywhere.
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) {
      event.detail.headers["X-CSRF-Token"] = meta.content;
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.id === "send" && event.detail.successful) {
      var box = document.getElementById("text");
      box.value = "";
      box.focus();
    }
    if (elt && elt.matches && elt.matches("button[aria-expanded]")) {
      elt.setAttribute("aria-expanded", "true");
    }
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    var last = document.querySelector("#conversation > li:last-child");
    if (last && last.scrollIntoView) {
      last.scrollIntoView({ block: "end" });
    }
  });
  document.addEventListener("keydown", function (event) {
    // Enter sends, Shift+Enter makes a new line (the usual chat keys).
    if (event.key === "Enter" && !event.shiftKey && event.target.id === "text") {
      event.preventDefault();
      var form = document.getElementById("send");
      if (event.target.value.trim()) {
        htmx.trigger(form, "submit");
      }
    }
  });
})();
