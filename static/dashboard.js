// The dashboard's only script besides htmx: local times on hover, and "select all" of a fleet table.
(function () {
  "use strict";
  var local = new Intl.DateTimeFormat(undefined, {
    weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  // Every <time datetime> (written relative, "3 min ago") shows the exact time in the reader's zone on hover.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      var utc = el.getAttribute("title") || el.getAttribute("datetime");
      el.setAttribute("title", local.format(when) + "\n" + utc);
      el.dataset.local = "1";
    });
  }

  document.addEventListener("change", function (event) {
    var all = event.target.closest("input.pick-all");
    if (!all) return;
    document.querySelectorAll('input.pick[form="' + all.getAttribute("form") + '"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localTimes(event.target); });
})();
