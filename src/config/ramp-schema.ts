import { Type, type Static } from '@sinclair/typebox'

/**
 * `ramp:` (docs/ramp.md; DESIGN.md "Ramp"): plans a route opts into with `ramp: <plan>`, their
 * schema and the plan the rest of Ficus reads (config/ramp.ts checks and builds it). Apart
 * from schema.ts, which names it, so that there is no import cycle.
 */

const Duration = Type.String({ format: 'duration', 'x-message': 'must be a duration like 10m or 1h' })
const Share = Type.String({ pattern: '^(100|[0-9]{1,2}(\\.[0-9]+)?)%$', 'x-message': 'must be a percentage like 2% or 0.5%' })
const Points = Type.String({ pattern: '^(100|[0-9]{1,2}(\\.[0-9]+)?)pp$', 'x-message': 'must be percentage points like 0.5pp (new\'s error rate minus legacy\'s)' })
const Confidence = Type.Number({ minimum: 0.5, maximum: 0.9999, 'x-message': 'must be a confidence between 0.5 and 0.9999, like 0.95' })

export const RampStepSchema = Type.Object({
  new: Type.Integer({ minimum: 1, maximum: 100, 'x-message': 'must be the share of users on new in this step, 1 to 100' }),
  hold: Type.Optional(Duration),
  minRequests: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
  /** Gates that must pass before this step is entered (beyond the step's own gates): `verify`, a recent clean verify. */
  require: Type.Optional(Type.Array(Type.Literal('verify', { 'x-message': 'must be verify (a recent clean ficus verify before this step)' }), { uniqueItems: true }))
}, { additionalProperties: false })

export const RampPlanSchema = Type.Object({
  steps: Type.Array(RampStepSchema, { minItems: 1, maxItems: 20 }),
  window: Type.Optional(Duration),
  confidence: Type.Optional(Type.Object({ advance: Type.Optional(Confidence), rollback: Type.Optional(Confidence) }, { additionalProperties: false })),
  gates: Type.Optional(Type.Object({
    divergence: Type.Optional(Type.Object({ max: Share }, { additionalProperties: false })),
    errors: Type.Optional(Type.Object({ maxIncrease: Points }, { additionalProperties: false })),
    latency: Type.Optional(Type.Object({
      p99Delta: Type.Optional(Duration),
      slowerBy: Type.Optional(Duration),
      maxShare: Type.Optional(Share)
    }, { additionalProperties: false })),
    sync: Type.Optional(Type.Object({ maxLag: Type.Optional(Duration), maxDeadLetters: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false })),
    verify: Type.Optional(Type.Object({ job: Type.String({ minLength: 1 }), maxAge: Type.Optional(Duration), maxMismatchRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })) }, { additionalProperties: false }))
  }, { additionalProperties: false })),
  tripwire: Type.Optional(Type.Object({ failureShare: Type.Optional(Share), minRequests: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })) }, { additionalProperties: false })),
  onFail: Type.Optional(Type.Union([Type.Literal('rollback'), Type.Literal('pause')], { 'x-message': 'must be rollback or pause' }))
}, { additionalProperties: false })

export const RampSchema = Type.Object({
  /** How often each replica reads its counters and the ramps' records, and the driver judges the gates (default 5s). */
  evaluateEvery: Type.Optional(Duration),
  plans: Type.Record(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' }), RampPlanSchema, { minProperties: 1, additionalProperties: false })
}, { additionalProperties: false })

export type RawRamp = Static<typeof RampSchema>
export type RawRampPlan = Static<typeof RampPlanSchema>

export type { RampPlan, RampStep } from '../core/ramp.js'
