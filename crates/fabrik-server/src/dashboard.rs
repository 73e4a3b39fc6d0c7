//! The dashboard: one page served by `fabrik serve` itself, plain HTML and JavaScript with no
//! build step and nothing fetched from the network. It reads `/v1/dashboard` with the token given
//! once as `?token=`: the page keeps it in the tab's session storage and removes it from the
//! address (so it stays out of history, bookmarks and Referer headers), then refreshes every
//! few seconds. A warning the executor announces (single-user mode) is shown on top.

pub const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fabrik dashboard</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1{margin:0 0 .3em}h2{margin:1.2em 0 .3em;font-size:1.1em}
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
.bar{display:inline-block;height:10px;background:#2a6fdb}.free{background:#cfdcf3}.muted{color:#777}#err{color:#b00}
.grid{display:flex;flex-wrap:wrap;gap:4px}.cell{width:14px;height:14px;border-radius:2px}
</style></head><body>
<h1>fabrik</h1><div id="warn" style="background:#fff3cd;padding:4px 8px;display:none"></div><div id="summary" class="muted">loading…</div><div id="err"></div>
<h2>Facility</h2><div id="groups" class="grid"></div>
<h2>Queue</h2><table id="queue"><thead><tr><th>job</th><th>name</th><th>account</th><th>GPUs</th><th>why pending</th><th>forecast start (P50 / P90)</th></tr></thead><tbody></tbody></table>
<h2>Running</h2><table id="running"><thead><tr><th>job</th><th>name</th><th>account</th><th>GPUs</th><th>started</th></tr></thead><tbody></tbody></table>
<h2>Nodes out of service and health</h2><div id="telemetry" class="muted"></div><table id="nodes"><thead><tr><th>node</th><th>group</th><th>GPU</th><th>state</th><th>health</th><th>why</th></tr></thead><tbody></tbody></table>
<h2>Accounts: usage vs share</h2><table id="accounts"><thead><tr><th>account</th><th>entitled</th><th>usage</th><th>GPU-hours</th><th>running GPUs</th><th>pending</th></tr></thead><tbody></tbody></table>
<h2>Busy GPUs by tenant class over time</h2><svg id="history" width="720" height="180"></svg>
<script>
const params = new URLSearchParams(location.search);
if (params.get('token')) {
  sessionStorage.setItem('fabrik-token', params.get('token'));
  history.replaceState(null, '', location.pathname);
}
const token = sessionStorage.getItem('fabrik-token');
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const pct = x => (100 * x).toFixed(1) + '%';
function rows(id, items, f) {
  document.querySelector('#' + id + ' tbody').innerHTML = items.map(x => '<tr>' + f(x).map(c => '<td>' + esc(c) + '</td>').join('') + '</tr>').join('');
}
function chart(h) {
  const svg = document.getElementById('history');
  if (!h.length) { svg.innerHTML = ''; return; }
  const classes = [...new Set(h.flatMap(s => Object.keys(s.by_class)))].sort();
  const colors = ['#2a6fdb', '#d9822b', '#3a9d5d', '#9b59b6', '#c0392b'];
  const max = Math.max(1, ...h.map(s => Object.values(s.by_class).reduce((a, b) => a + b, 0)));
  const x = i => 40 + 670 * (h.length > 1 ? i / (h.length - 1) : 0), y = v => 160 - 150 * v / max;
  let out = '<text x="0" y="14" font-size="10">' + max + '</text>';
  classes.forEach((c, k) => {
    const pts = h.map((s, i) => x(i).toFixed(1) + ',' + y(s.by_class[c] || 0).toFixed(1)).join(' ');
    out += '<polyline fill="none" stroke-width="1.5" stroke="' + colors[k % 5] + '" points="' + pts + '"/>';
    out += '<text x="' + (45 + 90 * k) + '" y="176" font-size="11" fill="' + colors[k % 5] + '">' + esc(c) + '</text>';
  });
  svg.innerHTML = out;
}
async function refresh() {
  if (!token) { document.getElementById('err').textContent = 'Open this page as /?token=YOUR_TOKEN'; return; }
  try {
    const r = await fetch('/v1/dashboard', { headers: { Authorization: 'Bearer ' + token } });
    const d = await r.json();
    if (!r.ok) { document.getElementById('err').textContent = d.error; return; }
    document.getElementById('err').textContent = '';
    const f = d.facility;
    const w = document.getElementById('warn');
    w.textContent = f.announcement || ''; w.style.display = f.announcement ? 'block' : 'none';
    document.getElementById('summary').textContent = f.name + ' (' + f.executor + ' executor): ' + f.busy_gpus + ' of ' + f.gpus +
      ' GPUs busy, ' + f.running_jobs + ' running, ' + f.pending_jobs + ' pending, IT power ' + (f.it_power_w / 1e3).toFixed(1) + ' kW, facility ' + (f.facility_power_w / 1e3).toFixed(1) + ' kW' + (f.power_cap_w ? ' of a ' + (f.power_cap_w / 1e3).toFixed(1) + ' kW cap' : '');
    document.getElementById('groups').innerHTML = f.groups.slice(0, 2000).map(g => {
      const u = g.busy / g.gpus;
      return '<div class="cell" title="group ' + g.group + ' ' + esc(g.hall) + ' ' + esc(g.gpu_type) + ': ' + g.busy + '/' + g.gpus +
        ' busy" style="background:rgba(42,111,219,' + (0.12 + 0.88 * u).toFixed(2) + ')"></div>';
    }).join('');
    const at = t => new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ');
    rows('queue', d.queue, ([j, why]) => [j.id, j.name, j.account, j.gpus, why,
      d.forecast[j.id] ? at(d.forecast[j.id][0]) + ' / ' + at(d.forecast[j.id][1]) : '-']);
    rows('running', d.running, j => [j.id, j.name, j.account, j.gpus, new Date(j.start_time * 1000).toISOString()]);
    rows('accounts', d.accounts.filter(a => a.leaf), a => [a.account, pct(a.entitled_share), pct(a.usage_share), a.gpu_hours.toFixed(2), a.running_gpus, a.pending_jobs]);
    const t = d.telemetry;
    document.getElementById('telemetry').textContent = t ? 'telemetry ' + t.state + (t.reason ? ': ' + t.reason : '') +
      ' — ' + t.drained_by_detector + ' of at most ' + t.drain_cap + ' nodes drained by the health detector' + (t.dry_run ? ' (dry run)' : '') : 'no telemetry input';
    rows('nodes', d.problem_nodes, n => [n.node, n.group, n.gpu_type, n.state,
      n.health ? (n.health.suspect ? 'suspect: ' + n.health.signals.join('+') : 'ok') : '-',
      (n.health && n.health.held_back ? 'not drained (' + n.health.held_back + '): ' + n.health.evidence : n.reason || '')]);
    chart(d.history);
  } catch (e) { document.getElementById('err').textContent = String(e); }
}
refresh(); setInterval(refresh, 3000);
</script></body></html>
"##;
