/**
 * The layers of src/ (docs/architecture.md): each may import its own layer and the ones
 * below it, never one above, and no import cycle anywhere. `npm run lint` runs it.
 *
 *   core ← config ← adapters ← pipeline, control ← app ← start/run ← cli
 */
const layers = [
  { name: 'core', path: '^src/(core/|version\\.ts$)' },
  { name: 'config', path: '^src/(config/|errors\\.ts$)' },
  { name: 'adapters', path: '^src/adapters/' },
  { name: 'pipeline', path: '^src/pipeline/', siblings: ['control'] },
  { name: 'control', path: '^src/control/', siblings: ['pipeline'] },
  { name: 'app', path: '^src/app\\.ts$' },
  { name: 'run', path: '^src/(start|reload|lifecycle|main)\\.ts$|^src/cluster/' },
  { name: 'cli', path: '^src/(cli\\.ts$|commands/)' }
]

const upward = layers.flatMap((layer, i) => {
  const above = layers.slice(i + 1).map((l) => l.path)
  const siblings = layers.filter((l) => (layer.siblings ?? []).includes(l.name)).map((l) => l.path)
  return [...above, ...siblings].length === 0
    ? []
    : [{
        name: `${layer.name}-points-down`,
        severity: 'error',
        comment: `${layer.name} may import only its own layer and the ones below it (docs/architecture.md)`,
        from: { path: layer.path },
        to: { path: [...above, ...siblings] }
      }]
})

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle: one of the two sides belongs lower (move the shared type or function down a layer)',
      from: { path: '^src/' },
      to: { circular: true }
    },
    {
      name: 'core-is-pure',
      severity: 'error',
      comment: 'core/ has no I/O, clock or randomness of its own: no node: modules and no frameworks (murmurhash3js is the hash)',
      from: { path: '^src/core/' },
      to: { dependencyTypes: ['core', 'npm', 'npm-dev'], pathNot: '^node_modules/murmurhash3js/' }
    },
    {
      name: 'unlayered',
      severity: 'error',
      comment: 'Every file of src/ belongs to a layer: add a new folder to the layers in .dependency-cruiser.cjs and docs/architecture.md',
      from: { path: '^src/', pathNot: layers.map((l) => l.path) },
      to: {}
    },
    ...upward
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a type that points up is a layer that points up.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.build.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] }
  }
}
