/**
 * The console's page, its style and its script (control/console.ts serves them): plain
 * HTML, CSS and JavaScript, no framework and no build step, 25.5 KB in all (8.1 KB gzipped). The script
 * reads the admin API every 2 seconds and acts through it with the session's CSRF token.
 */

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ficus console</title>
<link rel="stylesheet" href="/console/app.css">
<script src="/console/app.js" defer></script>
</head>
<body>
<header>
  <h1>Ficus console</h1>
  <p id="who" hidden></p>
  <button id="signout" type="button" hidden>Sign out</button>
</header>
<main>
  <section id="signin" hidden aria-labelledby="signin-title">
    <h2 id="signin-title">Sign in</h2>
    <form id="signin-form">
      <label for="token">Admin token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" aria-describedby="token-help">
      <p id="token-help">A token of routes.yaml's admin.tokens (empty when none is configured).</p>
      <button type="submit">Sign in</button>
    </form>
  </section>
  <section id="app" hidden>
    <nav aria-label="Views">
      <button type="button" data-view="routes" aria-pressed="true">Routes</button>
      <button type="button" data-view="divergences" aria-pressed="false">Divergences</button>
      <button type="button" data-view="history" aria-pressed="false">History</button>
    </nav>
    <section id="routes-view" aria-labelledby="routes-title">
      <h2 id="routes-title">Routes</h2>
      <p><button type="button" id="rollback-all" class="danger operator">Roll back every route</button></p>
      <div class="scroll"><table id="routes">
        <caption>Every route, updated every 2 seconds; each side's traffic <span id="covered">over the last 5 minutes</span></caption>
        <thead><tr><th scope="col">Route</th><th scope="col">Phase</th><th scope="col">New (configured, actual)</th><th scope="col">Shadow</th><th scope="col">Legacy's traffic</th><th scope="col">New's traffic</th><th scope="col">Divergence (5 min)</th><th scope="col">Breaker</th><th scope="col">Sync</th><th scope="col">Ramp</th><th scope="col">Actions</th></tr></thead>
        <tbody></tbody>
      </table></div>
    </section>
    <section id="divergences-view" hidden aria-labelledby="divergences-title">
      <h2 id="divergences-title">Divergences</h2>
      <div class="scroll"><table id="divergences">
        <caption>Shadow comparisons per route since its compare rules last changed</caption>
        <thead><tr><th scope="col">Route</th><th scope="col">Compared</th><th scope="col">Diverged</th><th scope="col">Rate</th><th scope="col">Fields that differ (count, kinds)</th><th scope="col">Samples</th></tr></thead>
        <tbody></tbody>
      </table></div>
      <section id="samples" aria-live="polite"></section>
    </section>
    <section id="history-view" hidden aria-labelledby="history-title">
      <h2 id="history-title">History</h2>
      <p><input type="checkbox" id="ramp-only"><label for="ramp-only" class="inline">Only the ramps' decisions</label></p>
      <div class="scroll"><table id="history">
        <caption>The audit log, newest first</caption>
        <thead><tr><th scope="col">Time</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Route</th><th scope="col">Change</th><th scope="col">Reason</th></tr></thead>
        <tbody></tbody>
      </table></div>
    </section>
  </section>
  <p id="status" role="status" aria-live="polite"></p>
  <dialog id="confirm" aria-labelledby="confirm-title">
    <form method="dialog" id="confirm-form">
      <h2 id="confirm-title"></h2>
      <p id="confirm-what"></p>
      <div id="confirm-fields"></div>
      <label for="confirm-reason">Reason (kept in the audit log)</label>
      <input id="confirm-reason" name="reason" maxlength="500" required>
      <p class="buttons"><button type="button" id="confirm-cancel">Cancel</button> <button type="submit" id="confirm-ok">Confirm</button></p>
    </form>
  </dialog>
</main>
</body>
</html>
`

export const CONSOLE_CSS = `:root { color-scheme: light; --fg: #1b1b1b; --bg: #fff; --muted: #4a4a4a; --line: #c8c8c8; --accent: #0b5cad; --danger: #a4161a; --ok: #17612a; --warn: #7a4d00; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .75rem 1rem; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.25rem; margin: 0; flex: 1; }
main { padding: 1rem; max-width: 100rem; margin: 0 auto; }
button, input { font: inherit; }
button { padding: .35rem .8rem; border: 1px solid var(--accent); background: #fff; color: var(--accent); border-radius: 4px; cursor: pointer; }
button:hover { background: #eef4fb; }
button.danger { border-color: var(--danger); color: var(--danger); }
button[aria-pressed="true"] { background: var(--accent); color: #fff; }
:focus-visible { outline: 3px solid #f5b700; outline-offset: 2px; }
label { display: block; margin: .5rem 0 .25rem; }
label.inline { display: inline; margin-left: .4rem; }
td.traffic { white-space: pre-line; font-size: .9rem; }
td.side { min-width: 10rem; }
td.stack { white-space: pre-line; }
ul.gates { margin: .25rem 0 0; padding-left: 1.1rem; font-size: .9rem; }
input { padding: .35rem .5rem; border: 1px solid var(--muted); border-radius: 4px; width: 100%; max-width: 28rem; }
input[type="checkbox"] { width: auto; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
caption { text-align: left; color: var(--muted); padding: .25rem 0; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.actions { min-width: 7.5rem; }
td.actions button { margin: 0 .25rem .25rem 0; }
.bad { color: var(--danger); font-weight: 600; }
.good { color: var(--ok); }
.warn { color: var(--warn); }
#status { min-height: 1.5rem; }
#status.error { color: var(--danger); font-weight: 600; }
dialog { border: 1px solid var(--muted); border-radius: 6px; max-width: 32rem; width: calc(100% - 2rem); }
dialog::backdrop { background: rgba(0, 0, 0, .35); }
.buttons { text-align: right; }
mark { background: #ffe08a; color: inherit; padding: 0 .15rem; }
.sample { border: 1px solid var(--line); border-radius: 6px; padding: .5rem .75rem; margin: .75rem 0; }
.sample h4 { margin: .25rem 0; font-size: 1rem; }
pre { background: #f4f4f4; padding: .5rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
td.value { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
body.viewer .operator { display: none; }
@media (max-width: 40rem) { th, td { padding: .3rem; font-size: .9rem; } }
`

export const CONSOLE_JS = `'use strict'
;(function () {
  const $ = (id) => document.getElementById(id)
  let csrf = null
  let role = 'viewer'
  let timer = null
  let view = 'routes'

  function say (text, error) {
    const s = $('status')
    s.textContent = text
    s.className = error ? 'error' : ''
  }

  async function call (method, path, body) {
    const headers = {}
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (method !== 'GET' && csrf !== null) headers['x-ficus-csrf'] = csrf
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' })
    const text = await r.text()
    let json = null
    try { json = text === '' ? null : JSON.parse(text) } catch (e) { json = null }
    if (!r.ok) {
      const err = new Error(json && json.error ? json.error + (json.detail ? ': ' + json.detail : '') + (json.code ? ' (' + json.code + ')' : '') : 'HTTP ' + r.status)
      err.status = r.status
      throw err
    }
    return json
  }

  function cell (tr, text, cls) {
    const td = document.createElement('td')
    td.textContent = text
    if (cls) td.className = cls
    tr.appendChild(td)
    return td
  }

  function button (td, label, cls, onClick) {
    const b = document.createElement('button')
    b.type = 'button'
    b.textContent = label
    if (cls) b.className = cls
    b.addEventListener('click', onClick)
    const row = td.closest ? td.closest('tr') : null
    b.dataset.key = (row && row.dataset.route ? row.dataset.route : '') + ':' + label
    td.appendChild(b)
    return b
  }

  /** Rebuilds a table, then gives keyboard focus back to the same button if it had it. */
  function keepFocus (rebuild) {
    const f = document.activeElement
    const key = f && f.dataset ? f.dataset.key : undefined
    rebuild()
    if (key) {
      const again = document.querySelector('button[data-key="' + CSS.escape(key) + '"]')
      if (again) again.focus()
    }
  }

  function phaseOf (r) {
    const n = r.new.value
    const s = r.shadow.value
    if (n === null) return 'per-user flag'
    if (n === 0) return s > 0 ? 'shadow' : 'legacy only'
    if (n < 100) return 'canary ' + n + ' %'
    return s > 0 ? 'new primary' : 'new only'
  }

  function pct (x) { return x === null || x === undefined ? '-' : (x * 100).toFixed(1) + ' %' }

  function confirmDialog (title, what, fields, onOk) {
    const d = $('confirm')
    $('confirm-title').textContent = title
    $('confirm-what').textContent = what
    const box = $('confirm-fields')
    box.textContent = ''
    for (const f of fields) {
      const l = document.createElement('label')
      l.htmlFor = 'field-' + f.name
      l.textContent = f.label
      const i = document.createElement('input')
      i.id = 'field-' + f.name
      i.name = f.name
      i.type = 'number'
      i.min = '0'
      i.max = '100'
      i.step = f.step || '1'
      i.value = String(f.value)
      i.required = true
      const after = () => { $('confirm-what').textContent = what + ' → ' + fields.map((x) => x.label + ' ' + $('field-' + x.name).value + ' %').join(', ') }
      i.addEventListener('input', after)
      box.appendChild(l)
      box.appendChild(i)
    }
    $('confirm-reason').value = ''
    const form = $('confirm-form')
    form.onsubmit = async (ev) => {
      ev.preventDefault()
      const values = {}
      for (const f of fields) values[f.name] = Number($('field-' + f.name).value)
      d.close()
      try {
        await onOk(values, $('confirm-reason').value)
      } catch (e) {
        say(e.message, true)
      }
      refresh()
    }
    $('confirm-cancel').onclick = () => d.close()
    d.showModal()
    ;(fields.length > 0 ? $('field-' + fields[0].name) : $('confirm-reason')).focus()
  }

  const shown = {}
  /** Whether \`what\` differs from what the view shows: a table is rebuilt only then, so keyboard focus stays where it is. */
  function changed (view, what) {
    const key = JSON.stringify(what)
    if (shown[view] === key) return false
    shown[view] = key
    return true
  }

  /** Each route's ramp as last read: a dialog opened later says where the ramp is then. */
  const latestRamp = {}

  function renderRoutes (routes, ramps, traffic) {
    caption(traffic)
    // What the rows show besides the traffic (not, say, the breaker's counters): the table is rebuilt only when that changes.
    const shownNow = routes.map((r) => [r.name, r.new.value, r.new.source, r.shadow.value, pct(r.divergence5m), r.breaker ? r.breaker.state : 'closed'])
    for (const r of ramps) latestRamp[r.route] = r
    if (changed('routes', [shownNow, ramps.map((r) => [r.route, r.phase, r.plan, r.step, r.steps])])) keepFocus(() => buildRoutes(routes, ramps, traffic))
    else updateTraffic(routes, traffic)
  }

  /** What span the traffic columns cover: the window, what the reads cover so far, or the time since Ficus started. */
  function caption (traffic) {
    const spans = Object.values(traffic.routes).map((x) => x.coveredS)
    const covered = spans.length === 0 ? traffic.windowS : Math.max.apply(null, spans)
    const text = covered > traffic.windowS + 1
      ? 'since Ficus started ' + span(covered) + ' ago (the last ' + span(traffic.windowS) + ' once the console has watched for a minute)'
      : 'over the last ' + span(Math.min(covered, traffic.windowS))
    if ($('covered').textContent !== text) $('covered').textContent = text
  }

  /** The cells that follow the traffic: [text, class] by column. */
  function trafficCells (r, t) {
    // New is marked when its error rate is over legacy's by more than a point.
    const worse = t && t.new.errorRate !== null && t.new.errorRate > (t.legacy.errorRate || 0) + 0.01
    const sy = t ? t.sync : null
    return {
      share: [(r.new.value === null ? 'flag' : r.new.value + ' %') + (r.new.source !== 'file' ? ' (' + r.new.source + ')' : '') + (t && t.newShare !== null ? '\\nactual ' + pct(t.newShare) : ''), 'stack'],
      legacy: [t ? sideText(t.legacy) : '-', 'traffic side'],
      new: [t ? sideText(t.new) : '-', 'traffic side' + (worse ? ' bad' : '')],
      sync: [sy === null ? '-' : 'lag ' + (sy.lagS === null ? '-' : span(sy.lagS)) + '\\n' + (sy.deadLetters === null ? '-' : sy.deadLetters) + ' dead letters',
        'traffic' + (sy !== null && (sy.deadLetters > 0 || sy.lagS > 60) ? ' bad' : '')]
    }
  }

  /** Only the traffic changed: its cells are updated in place (focus, a selection and a screen reader's place stay). */
  function updateTraffic (routes, traffic) {
    for (const r of routes) {
      const tr = document.querySelector('#routes tbody tr[data-route="' + CSS.escape(r.name) + '"]')
      if (!tr) continue
      const cells = trafficCells(r, traffic.routes[r.name])
      for (const col of Object.keys(cells)) {
        const td = tr.querySelector('td[data-col="' + col + '"]')
        if (td.textContent !== cells[col][0]) td.textContent = cells[col][0]
        if (td.className !== cells[col][1]) td.className = cells[col][1]
      }
    }
  }

  function span (s) {
    if (s < 90) return Math.round(s) + ' s'
    if (s < 5400) return Math.round(s / 60) + ' min'
    return (s / 3600).toFixed(1) + ' h'
  }

  function ms (x) { return x === null ? '-' : x < 10 ? x.toFixed(1) + ' ms' : Math.round(x) + ' ms' }

  /** One side's traffic: rate, errors, p50 and p99 (no p99 under 100 answers). */
  function sideText (x) {
    if (x.requests === 0) return 'no requests'
    return (x.perSecond === null ? '' : (x.perSecond < 10 ? x.perSecond.toFixed(2) : Math.round(x.perSecond)) + '/s, ') + x.requests + ' req\\n' +
      pct(x.errorRate) + ' errors' + (x.fallbacks ? ' (' + x.fallbacks + ' fell back)' : '') + '\\np50 ' + ms(x.p50Ms) + ', p99 ' + ms(x.p99Ms)
  }

  function buildRoutes (routes, ramps, traffic) {
    const byRoute = {}
    for (const r of ramps) byRoute[r.route] = r
    const tbody = document.querySelector('#routes tbody')
    tbody.textContent = ''
    for (const r of routes) {
      const tr = document.createElement('tr')
      tr.dataset.route = r.name
      const th = document.createElement('th')
      th.scope = 'row'
      th.textContent = r.name
      tr.appendChild(th)
      cell(tr, phaseOf(r))
      const tc = trafficCells(r, traffic.routes[r.name])
      const col = (name) => { cell(tr, tc[name][0], tc[name][1]).dataset.col = name }
      col('share')
      cell(tr, r.shadow.value + ' %')
      col('legacy')
      col('new')
      const d = r.divergence5m
      cell(tr, pct(d), d !== null && d !== undefined && d > 0.01 ? 'bad' : '')
      const br = r.breaker ? r.breaker.state : 'closed'
      cell(tr, br, br === 'closed' ? 'good' : 'bad')
      col('sync')
      const ramp = byRoute[r.name]
      cell(tr, ramp ? (ramp.phase === 'none' ? 'plan ' + ramp.plan : ramp.phase.replace('_', ' ') + (ramp.step ? ', step ' + ramp.step + '/' + ramp.steps : '')) : '-', ramp && (ramp.phase === 'rolled_back' || ramp.phase === 'paused') ? 'warn' : '')
      const td = cell(tr, '', 'actions operator')
      button(td, 'Change', '', () => confirmDialog('Change ' + r.name, 'new ' + (r.new.value === null ? 'flag' : r.new.value + ' %') + ', shadow ' + r.shadow.value + ' %',
        [{ name: 'new', label: 'new', value: r.new.value === null ? 0 : r.new.value }, { name: 'shadow', label: 'shadow', value: r.shadow.value, step: 'any' }],
        async (v, reason) => { await call('PATCH', '/admin/routes/' + encodeURIComponent(r.name), { new: v.new, shadow: v.shadow, reason }); say(r.name + ': new ' + v.new + ' %, shadow ' + v.shadow + ' %') }))
      button(td, 'Roll back', 'danger', () => confirmDialog('Roll back ' + r.name, 'new ' + (r.new.value === null ? 'flag' : r.new.value + ' %') + ' → 0 %: legacy answers everyone on this route, from the next request', [],
        async (_v, reason) => { await call('POST', '/admin/rollback', { route: r.name, reason }); say(r.name + ' rolled back: new 0 %') }))
      if (ramp) {
        const cmds = ramp.phase === 'running' ? ['pause'] : ramp.phase === 'paused' || ramp.phase === 'holding' ? ['resume'] : ['start']
        for (const c of cmds) {
          button(td, c[0].toUpperCase() + c.slice(1) + ' ramp', '', () => confirmDialog(c + ' the ramp of ' + r.name, (latestRamp[r.name] || ramp).text.split('\\n')[0], [],
            async (_v, reason) => { const v = await call('POST', '/admin/ramp/' + encodeURIComponent(r.name) + '/' + c, { reason }); say(v.text.split('\\n')[0]) }))
        }
      }
      tbody.appendChild(tr)
    }
  }

  let upstreams = {}

  function shq (s) { return "'" + String(s).replace(/'/g, "'\\''") + "'" }

  function renderSummary (routes) {
    if (!changed('divergences', routes.map((s) => [s.route, s.comparisons, s.divergenceRate, s.topFields]))) return
    keepFocus(() => buildSummary(routes))
  }

  function buildSummary (routes) {
    const tbody = document.querySelector('#divergences tbody')
    tbody.textContent = ''
    for (const s of routes) {
      const tr = document.createElement('tr')
      const th = document.createElement('th')
      th.scope = 'row'
      th.textContent = s.route
      tr.appendChild(th)
      cell(tr, String(s.comparisons.match + s.comparisons.diverged))
      cell(tr, String(s.comparisons.diverged), s.comparisons.diverged > 0 ? 'bad' : '')
      cell(tr, pct(s.divergenceRate))
      cell(tr, s.topFields.map((f) => f.field + ' (' + f.count + ', ' + Object.keys(f.kinds).join('/') + ')').join('; ') || '-')
      const td = cell(tr, '')
      if (s.comparisons.diverged > 0) button(td, 'Show samples of ' + s.route, '', () => showSamples(s.route))
      tbody.appendChild(tr)
    }
  }

  function json (v) { return v === undefined ? '(absent)' : JSON.stringify(v, null, 2) }

  async function showSamples (route) {
    const box = $('samples')
    try {
      const { samples } = await call('GET', '/admin/divergences?route=' + encodeURIComponent(route) + '&limit=5')
      box.textContent = ''
      const h = document.createElement('h3')
      h.textContent = 'Latest samples of ' + route
      box.appendChild(h)
      const origins = upstreams[route] || { legacy: null, new: null }
      for (const s of samples) {
        const div = document.createElement('article')
        div.className = 'sample'
        const h4 = document.createElement('h4')
        h4.textContent = s.method + ' ' + s.path + ' at ' + s.time + ': legacy ' + s.status.legacy + ' in ' + s.ms.legacy + ' ms, new ' + s.status.new + ' in ' + s.ms.new + ' ms (' + s.primary + ' answered)'
        div.appendChild(h4)
        const table = document.createElement('table')
        const cap = document.createElement('caption')
        cap.textContent = 'What differs, side by side' + (s.truncated ? ' (more differences than are kept)' : '')
        table.appendChild(cap)
        const head = document.createElement('tr')
        for (const t of ['Path', 'How', 'legacy', 'new']) { const x = document.createElement('th'); x.scope = 'col'; x.textContent = t; head.appendChild(x) }
        table.appendChild(head)
        for (const d of s.differences) {
          const tr = document.createElement('tr')
          const td = document.createElement('td')
          const m = document.createElement('mark')
          m.textContent = d.path
          td.appendChild(m)
          tr.appendChild(td)
          cell(tr, d.kind)
          cell(tr, json(d.legacy), 'value')
          cell(tr, json(d.new), 'value')
          table.appendChild(tr)
        }
        div.appendChild(table)
        for (const side of ['legacy', 'new']) {
          if (!origins[side]) continue
          const line = 'curl -si -X ' + s.method + ' ' + shq(origins[side] + s.path)
          const p = document.createElement('p')
          const code = document.createElement('pre')
          code.textContent = line
          code.setAttribute('aria-label', 'curl on ' + side)
          p.appendChild(code)
          button(p, 'Copy the curl on ' + side, '', async () => {
            try { await navigator.clipboard.writeText(line); say('copied: ' + line) } catch (e) { say('select the line and copy it: ' + line) }
          })
          div.appendChild(p)
        }
        box.appendChild(div)
      }
      if (samples.length > 0) {
        const note = document.createElement('p')
        note.textContent = 'The request is shown as Ficus keeps it: secret query values redacted, no headers, no body. On new, an id may be another one (the id map).'
        box.appendChild(note)
      }
    } catch (e) {
      say(e.message, true)
    }
  }

  let history = []

  /** The audit log; a ramp's decision with each gate's verdict and why, as the ramp judged it then. */
  function renderHistory (entries) {
    history = entries
    const rampOnly = $('ramp-only').checked
    if (!changed('history', [rampOnly, entries])) return
    const tbody = document.querySelector('#history tbody')
    tbody.textContent = ''
    for (const e of entries) {
      if (rampOnly && !e.action.startsWith('ramp-')) continue
      const tr = document.createElement('tr')
      cell(tr, e.time)
      cell(tr, e.who)
      cell(tr, e.action, e.action === 'ramp-fail' || e.action === 'ramp-trip' || e.action === 'rollback' || e.action === 'refused' ? 'bad' : '')
      cell(tr, e.route || '-')
      const td = cell(tr, e.before && e.after ? 'new ' + e.before.new + ' → ' + e.after.new + ' %, shadow ' + e.before.shadow + ' → ' + e.after.shadow + ' %' : (e.detail || ''))
      if (e.gates && e.gates.length > 0) {
        const ul = document.createElement('ul')
        ul.className = 'gates'
        ul.setAttribute('aria-label', 'the gates it rested on')
        for (const g of e.gates) {
          const li = document.createElement('li')
          const b = document.createElement('strong')
          b.textContent = g.gate + ': ' + g.verdict
          b.className = g.verdict === 'pass' ? 'good' : g.verdict === 'fail' ? 'bad' : 'warn'
          li.appendChild(b)
          li.appendChild(document.createTextNode(' ' + g.why))
          ul.appendChild(li)
        }
        td.appendChild(ul)
      }
      cell(tr, e.reason || '')
      tbody.appendChild(tr)
    }
  }
  $('ramp-only').addEventListener('change', () => renderHistory(history))

  async function refresh () {
    try {
      if (view === 'routes') {
        const [routes, ramps, traffic] = await Promise.all([call('GET', '/admin/routes'), call('GET', '/admin/ramp'), call('GET', '/admin/traffic')])
        renderRoutes(routes.routes, ramps.ramps, traffic)
      } else if (view === 'divergences') {
        const [routes, summary] = await Promise.all([call('GET', '/admin/routes'), call('GET', '/admin/divergences/summary')])
        for (const r of routes.routes) upstreams[r.name] = r.upstreams || { legacy: null, new: null }
        renderSummary(summary.routes)
      } else {
        renderHistory((await call('GET', '/admin/audit?limit=200')).entries)
      }
    } catch (e) {
      if (e.status === 401) return signedOut()
      say(e.message, true)
    }
  }

  function signedIn (s) {
    csrf = s.csrf
    role = s.role
    document.body.classList.toggle('viewer', role === 'viewer')
    $('who').textContent = 'Signed in as ' + s.who + ' (' + s.role + ')'
    $('who').hidden = false
    $('signout').hidden = false
    $('signin').hidden = true
    $('app').hidden = false
    refresh()
    if (timer === null) timer = setInterval(refresh, 2000)
  }

  function signedOut () {
    csrf = null
    if (timer !== null) clearInterval(timer)
    timer = null
    $('app').hidden = true
    $('who').hidden = true
    $('signout').hidden = true
    $('signin').hidden = false
    $('token').focus()
  }

  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    try {
      signedIn(await call('POST', '/console/session', { token: $('token').value }))
      $('token').value = ''
      say('')
    } catch (e) {
      say(e.message, true)
    }
  })
  $('signout').addEventListener('click', async () => {
    try { await call('DELETE', '/console/session') } catch (e) { /* signed out anyway */ }
    signedOut()
  })
  $('rollback-all').addEventListener('click', () => confirmDialog('Roll back every route', 'new → 0 % on every route: legacy answers everyone, from the next request', [],
    async (_v, reason) => { await call('POST', '/admin/rollback', { reason }); say('every route rolled back: new 0 %') }))
  for (const b of document.querySelectorAll('nav button')) {
    b.addEventListener('click', () => {
      view = b.dataset.view
      for (const x of document.querySelectorAll('nav button')) x.setAttribute('aria-pressed', String(x === b))
      $('routes-view').hidden = view !== 'routes'
      $('divergences-view').hidden = view !== 'divergences'
      $('history-view').hidden = view !== 'history'
      refresh()
    })
  }
  call('GET', '/console/session').then(signedIn, signedOut)
})()
`
