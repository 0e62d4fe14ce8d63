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
  // A live region only speaks when its content changes after it is in the page: a swapped-in
  // fragment's own role="status" is new, so screen readers may stay silent. Each fragment
  // marks its message with data-announce; it is read out through the page's #announce.
  document.addEventListener("htmx:afterSettle", function () {
    var live = document.getElementById("announce");
    var said = document.querySelectorAll("[data-announce]:not([data-announced])");
    if (!live || !said.length) {
      return;
    }
    var text = said[said.length - 1].textContent;
    said.forEach(function (element) { element.setAttribute("data-announced", ""); });
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
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
