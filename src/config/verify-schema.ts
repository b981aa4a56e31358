import { Type, type Static } from '@sinclair/typebox'
import type { CompareRules } from '../core/compare-rules.js'

/**
 * `verify:` (docs/verify.md; DESIGN.md "Verify"): its schema, and the job the rest of Ficus
 * reads (config/verify.ts checks and builds it). Apart from schema.ts, so that the schema can
 * name it without an import cycle.
 */

/** What a job needs of an upstream (a subset of UpstreamConfig). */
export interface VerifyUpstream {
  readonly name: string
  readonly origin: string
  readonly connectTimeoutMs: number
}

const Str = Type.String({ minLength: 1 })
const Query = Type.Record(Type.String({ minLength: 1 }), Type.String())
const BodyPath = Type.String({ minLength: 4, 'x-message': 'must be a path in the answer like body.items or body.next_cursor' })

const listFields = {
  path: Type.Optional(Type.String({ pattern: '^/', 'x-message': 'must be a path like /api/orders' })),
  query: Type.Optional(Query),
  items: Type.Optional(BodyPath),
  id: Type.Optional(Str),
  next: Type.Optional(BodyPath),
  cursorParam: Type.Optional(Str),
  offsetParam: Type.Optional(Str),
  total: Type.Optional(BodyPath)
}
const ListSide = Type.Object(listFields, { additionalProperties: false })

export const VerifyJobSchema = Type.Object({
  route: Str,
  entity: Type.Optional(Str),
  list: Type.Object({ ...listFields, legacy: Type.Optional(ListSide), new: Type.Optional(ListSide) }, { additionalProperties: false }),
  listQuery: Type.Optional(Type.Object({ legacy: Type.Optional(Query), new: Type.Optional(Query) }, { additionalProperties: false })),
  get: Type.Optional(Type.String({ pattern: '^/.*:id(/|$|\\?)', 'x-message': 'must be a path with :id where the record\'s id goes, like /api/orders/:id' })),
  headers: Type.Optional(Type.Record(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), Type.String())),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  rate: Type.Optional(Type.String({ pattern: '^[1-9][0-9]*/s$', 'x-message': 'must be requests per second like 50/s' })),
  settle: Type.Optional(Type.String({ format: 'duration', 'x-message': 'must be a duration like 30s' })),
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  /** Runs by Ficus itself: every `every`, in `mode` (a sample of `sample` records, seeded by the run's time). */
  schedule: Type.Optional(Type.Object({
    every: Type.String({ format: 'duration', 'x-message': 'must be a duration like 6h or 30m' }),
    mode: Type.Optional(Type.Union([Type.Literal('count'), Type.Literal('checksum'), Type.Literal('sample'), Type.Literal('full')], { 'x-message': 'must be count, checksum, sample or full' })),
    sample: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 }))
  }, { additionalProperties: false })),
  timeout: Type.Optional(Type.String({ format: 'duration', 'x-message': 'must be a duration like 10s' }))
}, { additionalProperties: false })

export type RawVerifyJob = Static<typeof VerifyJobSchema>

/** How one side lists its records. */
export interface ListSpec {
  readonly path: string
  readonly query: readonly (readonly [string, string])[]
  /** Where the records are in the answer (segments under `body`; empty: the body is the array). */
  readonly items: readonly string[]
  /** Where a record's id is in the record. */
  readonly id: readonly string[]
  readonly paging:
    | { readonly kind: 'cursor'; readonly next: readonly string[]; readonly param: string }
    /** `next` holds the next page's path (or URL) itself. */
    | { readonly kind: 'link'; readonly next: readonly string[] }
    | { readonly kind: 'offset'; readonly param: string }
    | { readonly kind: 'none' }
  readonly total: readonly string[] | null
}

export interface VerifyJob {
  readonly name: string
  readonly route: string
  /** The entity of the route's id map; null: ids compare as they are (the route is not dual). */
  readonly entity: string | null
  /** The route is dual: its writes may still be on their way to a side (the outbox), and its store is read. */
  readonly dual: boolean
  /** Whether ids differ per side (the route is dual and `sync.unmappedIds` is `wait`): a record is found on the other side through the id map. */
  readonly mapped: boolean
  /** The route's compare rules, with the record's own id at its id path when ids are mapped. */
  readonly compare: CompareRules
  readonly list: { readonly legacy: ListSpec; readonly new: ListSpec }
  /** One record's path, `:id` where its id goes. */
  readonly get: string | null
  readonly headers: readonly (readonly [string, string])[]
  readonly upstreams: { readonly legacy: VerifyUpstream; readonly new: VerifyUpstream }
  readonly concurrency: number
  readonly ratePerSecond: number
  readonly settleMs: number
  readonly maxAttempts: number
  readonly timeoutMs: number
  /** Ficus runs the job itself this often (ms); null: on demand only (ficus verify, the admin API). */
  readonly scheduleMs: number | null
  /** The mode of scheduled runs, and a scheduled sample's size. */
  readonly scheduleMode: 'count' | 'checksum' | 'sample' | 'full'
  readonly scheduleSample: number
  /** A fingerprint of what decides the job's results: `--resume` refuses a saved run when it changed. */
  readonly fingerprint: string
}
