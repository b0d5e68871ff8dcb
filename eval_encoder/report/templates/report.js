// Sortable tables, no library: a click on a header sorts the table's groups (a tbody.grp:
// a measured line with its reported and delta lines) or, in a table of single lines, its rows,
// by the column's data-v number (else its text). O(n log n); rows are moved, not rebuilt.
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) return null;
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "") return parseFloat(v);
    var text = cell.textContent.trim();
    return text === "" ? null : text.toLowerCase();
  }
  function compare(a, b, dir) {
    if (a === b) return 0;
    if (a === null) return 1;  // empty cells last, either way
    if (b === null) return -1;
    if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
    return (a < b ? -1 : 1) * dir;
  }
  function sortTable(table, th) {
    var col = th.cellIndex, dir = th.classList.contains("asc") ? -1 : 1;
    var groups = table.querySelectorAll("tbody.grp");
    var items = [], parent, i;
    if (groups.length) {
      for (i = 0; i < groups.length; i++) items.push({el: groups[i], k: key(groups[i].rows[0], col), o: i});
      parent = table;
      table.querySelectorAll("tbody.block").forEach(function (b) { b.classList.add("hidden"); });
    } else {
      parent = table.tBodies[0];
      for (i = 0; i < parent.rows.length; i++) items.push({el: parent.rows[i], k: key(parent.rows[i], col), o: i});
    }
    items.sort(function (a, b) { return compare(a.k, b.k, dir) || a.o - b.o; });
    var frag = document.createDocumentFragment();
    items.forEach(function (it) { frag.appendChild(it.el); });
    parent.appendChild(frag);
    table.querySelectorAll("th.sort").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(dir === 1 ? "asc" : "desc");
  }
  function reset(table) {
    var parts = Array.prototype.slice.call(table.querySelectorAll("tbody"));
    parts.sort(function (a, b) { return a.getAttribute("data-order") - b.getAttribute("data-order"); });
    parts.forEach(function (p) { p.classList.remove("hidden"); table.appendChild(p); });
    table.querySelectorAll("th.sort").forEach(function (h) { h.classList.remove("asc", "desc"); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th) {
      th.classList.add("sort");
      th.addEventListener("click", function () { sortTable(table, th); });
    });
    var button = document.querySelector("button[data-reset='" + table.id + "']");
    if (button) button.addEventListener("click", function () { reset(table); });
    table.setAttribute("data-sortable", "ready");
  });
  document.body.setAttribute("data-ready", "1");
})();
