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
