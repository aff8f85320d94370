// Review pages' one script: draw a box on a photo to fill the "add a missed defect" form, and
// highlight a defect's outline while its table row is hovered or focused. Pages work without it
// (the box corners can be typed in).
(function () {
  "use strict";
  function toPhoto(stage, evt) {
    var svg = stage.querySelector("svg");
    var r = svg.getBoundingClientRect();
    var w = Number(stage.dataset.width), h = Number(stage.dataset.height);
    var x = (evt.clientX - r.left) / r.width * w, y = (evt.clientY - r.top) / r.height * h;
    return [Math.max(0, Math.min(w, x)), Math.max(0, Math.min(h, y))];
  }
  document.querySelectorAll(".stage").forEach(function (stage) {
    var idx = stage.dataset.photo, start = null;
    var draft = stage.querySelector(".draft");
    var form = document.querySelector('.add-form[data-photo="' + idx + '"]');
    if (!draft || !form) { return; }
    function box(a, b) {
      return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
    }
    function show(b) {
      draft.setAttribute("x", b[0]); draft.setAttribute("y", b[1]);
      draft.setAttribute("width", b[2] - b[0]); draft.setAttribute("height", b[3] - b[1]);
    }
    stage.addEventListener("pointerdown", function (evt) {
      if (evt.button !== 0) { return; }
      start = toPhoto(stage, evt);
      stage.setPointerCapture(evt.pointerId);
      show([start[0], start[1], start[0], start[1]]);
      evt.preventDefault();
    });
    stage.addEventListener("pointermove", function (evt) {
      if (start) { show(box(start, toPhoto(stage, evt))); }
    });
    stage.addEventListener("pointerup", function (evt) {
      if (!start) { return; }
      var b = box(start, toPhoto(stage, evt));
      start = null;
      if (b[2] - b[0] < 2 || b[3] - b[1] < 2) { show([0, 0, 0, 0]); return; }
      show(b);
      ["x0", "y0", "x1", "y1"].forEach(function (c, i) {
        form.querySelector('[data-coord="' + c + '"]').value = Math.round(b[i]);
      });
      var details = form.closest("details");
      if (details) { details.open = true; }
      var help = document.getElementById("add-help-" + idx);
      if (help) {
        help.textContent = "Box drawn: " + b.map(Math.round).join(", ") +
          " (left, top, right, bottom). Choose its type and zone, then press Add defect.";
      }
      form.querySelector("select").focus();
    });
  });
  document.querySelectorAll("tr[data-mark]").forEach(function (row) {
    var mark = document.getElementById(row.dataset.mark);
    if (!mark) { return; }
    function on() { mark.classList.add("highlight"); }
    function off() { mark.classList.remove("highlight"); }
    row.addEventListener("mouseenter", on); row.addEventListener("mouseleave", off);
    row.addEventListener("focusin", on); row.addEventListener("focusout", off);
  });
})();
