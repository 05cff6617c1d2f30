// wecom-bridge console: progressive enhancement only; every page works without it.
// Shows <time datetime="…"> values in the browser's local time zone.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(d.getTime())) {
      el.title = el.getAttribute("datetime");
      el.textContent = d.toLocaleString();
    }
  }
});
// Mapping playground: a chosen sample file is read into the sample box (nothing is uploaded
// until the operator presses "Try").
document.addEventListener("DOMContentLoaded", () => {
  const file = document.getElementById("sample-file");
  const box = document.getElementById("sample");
  if (!file || !box) return;
  file.addEventListener("change", () => {
    const f = file.files && file.files[0];
    if (!f) return;
    f.text().then((text) => { box.value = text; });
  });
});
