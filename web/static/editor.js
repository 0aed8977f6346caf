// The sequence editor's live preview: after a pause in typing, the step's form (unsaved)
// is checked by the server, and the lint beside each field and the preview are replaced
// with what it sends back. Without this script the page works the same on Save.
(function () {
  "use strict";
  var form = document.getElementById("step-form");
  if (!form || !form.dataset.check) return;
  var status = document.getElementById("live-status");
  var timer = null;
  var latest = 0;

  function say(text) { if (status) status.textContent = text; }

  function errorLine(text) {
    var p = document.createElement("p");
    p.className = "error";
    var strong = document.createElement("strong");
    strong.textContent = "Not valid yet: ";
    p.appendChild(strong);
    p.appendChild(document.createTextNode(text));
    return p;
  }

  function show(answer, ok) {
    var findings = answer.findings || {};
    var errors = answer.errors || {};
    document.querySelectorAll("[data-lint-for]").forEach(function (box) {
      var name = box.getAttribute("data-lint-for");
      if (ok) box.innerHTML = findings[name] || "";  // escaped by the server's templates
      else box.innerHTML = "";
      if (errors[name]) box.appendChild(errorLine(errors[name]));
    });
    if (ok && answer.preview !== undefined) {
      document.getElementById("preview-area").innerHTML = answer.preview;
    }
    say(ok ? "Checked and previewed as typed (not saved yet)."
           : "Not valid yet: see the message beside the field.");
  }

  function check() {
    var mine = ++latest;
    say("Checking…");
    fetch(form.dataset.check, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (mine === latest) show(answer, response.ok);
      });
    }).catch(function () {
      if (mine === latest) say("Could not check just now: Save shows the preview.");
    });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(check, 700);
  }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
})();
