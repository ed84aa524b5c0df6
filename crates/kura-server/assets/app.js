// Kura: small progressive enhancements (no inline script anywhere).
"use strict";
document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (!(form instanceof HTMLFormElement)) return;
  const msg = form.dataset.confirm;
  if (msg && !window.confirm(msg)) ev.preventDefault();
});
