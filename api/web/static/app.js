// collider: a little script over pages that work without it.
// Confirm dialogs for actions that change things, and live progress on a
// running run's page (it polls the page's JSON twin).
document.addEventListener('submit', function (e) {
  var msg = e.target.getAttribute('data-confirm');
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
(function () {
  var el = document.querySelector('[data-run-live]');
  if (!el) { return; }
  var url = el.getAttribute('data-run-live');
  function tick() {
    fetch(url, { headers: { 'Accept': 'application/json' }, credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (run) {
        var p = run.progress;
        var status = document.getElementById('run-status');
        if (status) { status.textContent = run.status_name || run.status; }
        if (p) {
          var step = document.getElementById('run-step');
          if (step) { step.textContent = (p.step_name || p.step) + (p.detail ? ' ' + p.detail : ''); }
          var bar = document.getElementById('run-bar');
          if (bar && p.percent !== undefined && p.percent !== null) { bar.style.width = p.percent.toFixed(1) + '%'; }
          var pct = document.getElementById('run-percent');
          if (pct && p.percent !== undefined && p.percent !== null) { pct.textContent = p.percent.toFixed(1) + '%'; }
        }
        if (run.status === 'running') { setTimeout(tick, 1000); } else { window.location.reload(); }
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
