import t, { type Test } from 'tap'
import { samples, summary } from '../helpers/admin.js'
import { caughtUp, dualRig, setNew, type DualRig } from '../helpers/dual-rig.js'
import { sample, type TestFicus } from '../helpers/ficus.js'

/**
 * compare.ids (docs/shadow.md): on a dual route the two sides give one record different ids
 * (demo/records.ts: legacy counts from 1000, new gives `n-3e9`), so every shadow read would
 * diverge at its ids. With compare.ids the ids the id map pairs compare equal, whichever side
 * answers; an id it does not know still shows; a read whose id cannot be mapped is skipped.
 * Two real records APIs, a real LMDB file, real sockets, shadow: 100.
 */

const IDS = { notes: { 'body.notes[*].id': 'note' }, note: { 'body.id': 'note' } }

async function rig(t: Test, withIds: boolean, top: Record<string, unknown> = {}): Promise<DualRig> {
  return dualRig(t, top, [
    // The list (GET) and creates (POST): a create's id is learned from its answer.
    { name: 'notes', match: { path: '/api/notes' }, new: 0, shadow: 100, sync: { mode: 'dual', entity: 'note', learn: 'response.body.id' }, ...(withIds ? { compare: { ids: IDS.notes } } : {}) },
    { name: 'note', match: { path: '/api/notes/:id' }, new: 0, shadow: 100, sync: { mode: 'dual', entity: 'note', key: 'path.id' }, ...(withIds ? { compare: { ids: IDS.note } } : {}) }
  ])
}

const create = async (f: TestFicus, body: unknown): Promise<string> => {
  const r = await f.fetch('/api/notes', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
  if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`)
  return (r.json() as { id: string }).id
}

/** GETs each path through Ficus, then waits for their comparisons. */
async function read(f: TestFicus, paths: readonly string[]): Promise<void> {
  for (const p of paths) {
    const r = await f.fetch(p)
    if (r.status !== 200 && r.status !== 404) throw new Error(`GET ${p}: ${r.status} ${r.text}`)
  }
  await f.shadowIdle()
}

t.test('with compare.ids, reads of records created through Ficus match, whichever side answers; a real difference still shows', async (t) => {
  const { next, f } = await rig(t, true)
  const a = await create(f, { text: 'first' })
  const b = await create(f, { text: 'second' })
  t.same([a, b], ['1000', '1001'], 'legacy answers: the client holds legacy\'s ids')
  await caughtUp(f)
  t.same([...next.notes.keys()], ['n-3e9', 'n-3ea'], 'new has them under its own ids')

  await read(f, [`/api/notes/${a}`, `/api/notes/${b}`, '/api/notes'])
  t.match(await summary(f, 'note'), { comparisons: { match: 2, diverged: 0, error: 0, skipped: 0 } }, 'legacy primary: body.id 1000 = n-3e9')
  t.match(await summary(f, 'notes'), { comparisons: { match: 1, diverged: 0, error: 0, skipped: 0 } }, 'and every id of the list')

  // new answers, legacy gets the copy: the pairs hold the other way round too.
  await setNew(f, 100, ['notes', 'note'])
  const served = await f.fetch(`/api/notes/${a}`)
  t.same([served.headers['x-served-by'], served.json()], ['new', { text: 'first', id: 'n-3e9' }])
  await read(f, ['/api/notes/n-3ea', '/api/notes'])
  t.match(await summary(f, 'note'), { comparisons: { match: 4, diverged: 0 } }, 'new primary, by legacy\'s id and by new\'s')
  t.match(await summary(f, 'notes'), { comparisons: { match: 2, diverged: 0 } })

  // new drifts from legacy: the divergence is there, and it is not the id.
  next.notes.set('n-3e9', { text: 'drifted', id: 'n-3e9' })
  await read(f, [`/api/notes/${a}`])
  t.match(await summary(f, 'note'), { comparisons: { match: 4, diverged: 1 } })
  const [s] = await samples(f, '?route=note&limit=1')
  t.same(s?.differences.map((d) => [d.path, d.legacy, d.new]), [['body.text', 'first', 'drifted']], 'only body.text differs')
  t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'note', outcome: 'error' }), 0, 'the id map answered every time')
})

t.test('without compare.ids the same reads diverge at every id', async (t) => {
  const { f } = await rig(t, false)
  const a = await create(f, { text: 'first' })
  await caughtUp(f)
  await read(f, [`/api/notes/${a}`, '/api/notes'])
  t.match(await summary(f, 'note'), { comparisons: { match: 0, diverged: 1 } })
  t.match(await summary(f, 'notes'), { comparisons: { match: 0, diverged: 1 } })
  const [one] = await samples(f, '?route=note&limit=1')
  t.same(one?.differences.map((d) => [d.path, d.legacy, d.new]), [['body.id', '1000', 'n-3e9']])
  const [list] = await samples(f, '?route=notes&limit=1')
  t.same(list?.differences.map((d) => [d.path, d.legacy, d.new]), [['body.notes[0].id', '1000', 'n-3e9']])
})

t.test('a read by an id the map cannot translate is skipped (id_unmapped), never a false divergence', async (t) => {
  const { legacy, next, f } = await rig(t, true)
  // Created while new is down: legacy has it, new does not yet, and the map has no pair.
  next.down = true
  const a = await create(f, { text: 'waiting' })
  legacy.notes.set('4242', { text: 'made on legacy behind Ficus\'s back', id: '4242' })
  await read(f, [`/api/notes/${a}`, '/api/notes/4242', '/api/notes/999999'])
  t.match(await summary(f, 'note'), { comparisons: { match: 0, diverged: 0, error: 0, skipped: 3 }, skipped: { id_unmapped: 3 } },
    'not learned yet, never learned, unknown everywhere: no copy, no comparison')
  t.equal(sample(await f.scrape(), 'ficus_idmap_misses_total', { route: 'note', where: 'shadow' }), 3)
  t.same(await samples(f, '?route=note'), [], 'no divergence sample')

  // new is back, the create is delivered and its pair learned: the same read now compares, and matches.
  next.down = false
  await caughtUp(f)
  await read(f, [`/api/notes/${a}`])
  t.match(await summary(f, 'note'), { comparisons: { match: 1, diverged: 0, skipped: 3 } })
})

t.test('the id map unreadable or hung: comparisons on the route are errors (idmap_unavailable), logged once, never a divergence at every id', async (t) => {
  const { f } = await rig(t, true, { shadow: { timeout: '300ms' } })
  const a = await create(f, { text: 'first' })
  await caughtUp(f)
  const store = f.running.ficus.sync()!.store
  const lookupIds = store.lookupIds.bind(store)
  let fault: 'fail' | 'hang' | null = 'fail'
  store.lookupIds = async (...args) => {
    if (fault === 'fail') throw new Error('the store is gone (test)')
    if (fault === 'hang') return new Promise(() => {})
    return lookupIds(...args)
  }
  await read(f, [`/api/notes/${a}`, `/api/notes/${a}`])
  t.match(await summary(f, 'note'), { comparisons: { match: 0, diverged: 0, error: 2 }, errors: { idmap_unavailable: 2 } })
  t.equal(f.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('shadow: the id map could not be read')).length, 1, 'logged once')
  fault = 'hang'
  await read(f, [`/api/notes/${a}`])
  t.match(await summary(f, 'note'), { comparisons: { error: 3 }, errors: { idmap_unavailable: 3 } }, 'a map that does not answer holds the shadow slot no longer than shadow.timeout')
  t.equal(f.running.ficus.shadowing.inFlight, 0)
  fault = null
  await read(f, [`/api/notes/${a}`])
  t.match(await summary(f, 'note'), { comparisons: { match: 1, error: 3 } })
  t.ok(f.logs.lines.some((l) => l.msg === 'shadow: the id map answers again; compare.ids translates ids'), 'and its return is logged')
})
