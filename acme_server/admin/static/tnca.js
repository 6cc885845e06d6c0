// tnca pages: small enhancements only; every page works without this file.
// Loaded as an external script because the Content-Security-Policy allows no inline script.
"use strict";

// Copy buttons: <button data-copy="ELEMENT-ID"> copies that element's value or text.
function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  return new Promise(function (resolve, reject) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy") ? resolve() : reject(new Error("copy refused"));
    } catch (error) {
      reject(error);
    } finally {
      document.body.removeChild(area);
    }
  });
}

document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  event.preventDefault();
  var source = document.getElementById(button.getAttribute("data-copy"));
  var status = document.getElementById(button.getAttribute("data-copy") + "-status");
  if (!source) {
    return;
  }
  var text = "value" in source ? source.value : source.textContent;
  copyText(text.trim()).then(function () {
    if (status) { status.textContent = "Copied to the clipboard."; }
  }, function () {
    if (source.select) { source.select(); }
    if (status) { status.textContent = "Selected: press Ctrl+C (⌘C) to copy."; }
  });
});

// Buttons that need a second thought: <button data-confirm="Question?">.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  if (button && button.hasAttribute("data-confirm") && !window.confirm(button.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});
