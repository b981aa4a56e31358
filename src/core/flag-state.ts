/**
 * What a route's Unleash flag means for its share of new (pure): read from the flag's
 * definition as the client holds it, for the admin API, `ficus status` and the
 * `ficus_route_new_percent` gauge. The per-request verdict is always the client's
 * isEnabled(); this only describes it.
 */

/** The part of an Unleash feature definition this reads (the client's FeatureInterface). */
export interface FlagDefinition {
  readonly enabled: boolean
  readonly strategies?: readonly {
    readonly name: string
    readonly parameters?: Readonly<Record<string, unknown>>
    readonly constraints?: readonly unknown[]
    readonly segments?: readonly unknown[]
    readonly disabled?: boolean | null
  }[]
}

export interface FlagState {
  readonly name: string
  /** Whether the client knows the flag (a flag it does not know is off: legacy). */
  readonly known: boolean
  readonly enabled: boolean
  /** Names of the active strategies, in order. */
  readonly strategies: readonly string[]
  /**
   * The share of users on new when it is a plain number: 0 when off or unknown, the
   * rollout of a single flexibleRollout without constraints, 100 for a single `default`
   * strategy; null when strategies or constraints decide per user (no single number).
   */
  readonly share: number | null
  /** The flexibleRollout's groupId (users are bucketed by `<groupId>:<userId>`), when there is one. */
  readonly groupId: string | null
}

/**
 * @example flagState('orders-new', { enabled: true, strategies: [{ name: 'flexibleRollout', parameters: { rollout: '25', groupId: 'orders-new' } }] })
 * // { name: 'orders-new', known: true, enabled: true, strategies: ['flexibleRollout'], share: 25, groupId: 'orders-new' }
 */
export function flagState(name: string, def: FlagDefinition | undefined): FlagState {
  if (def === undefined) return { name, known: false, enabled: false, strategies: [], share: 0, groupId: null }
  const active = (def.strategies ?? []).filter((s) => s.disabled !== true)
  const flexible = active.find((s) => s.name === 'flexibleRollout')
  const groupId = flexible?.parameters?.groupId
  const state = { name, known: true, enabled: def.enabled, strategies: active.map((s) => s.name), groupId: typeof groupId === 'string' && groupId !== '' ? groupId : null }
  if (!def.enabled) return { ...state, share: 0 }
  // An enabled flag with no strategy is on for everyone (Unleash's default strategy).
  if (active.length === 0) return { ...state, share: 100 }
  if (active.length > 1) return { ...state, share: null }
  const only = active[0] as NonNullable<typeof flexible>
  if ((only.constraints?.length ?? 0) > 0 || (only.segments?.length ?? 0) > 0) return { ...state, share: null }
  if (only.name === 'default') return { ...state, share: 100 }
  if (only.name !== 'flexibleRollout') return { ...state, share: null }
  const rollout = Number(only.parameters?.rollout)
  return { ...state, share: Number.isFinite(rollout) && rollout >= 0 && rollout <= 100 ? rollout : null }
}
