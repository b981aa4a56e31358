'use strict'
/**
 * The tests' TypeScript compiler: tap runs each test file in a process of its own, and ts-node
 * (tap's loader) compiled every src/ file it imports again in each one with TypeScript's
 * transpileModule, ~6 s per file. @swc/core does the same type stripping (transpile only:
 * `npm run lint` type-checks) in a fraction of that. ts-node's own swc preset drops import
 * attributes (`with { type: 'json' }`, src/version.ts), so this one keeps them.
 * Named in tsconfig.json's "ts-node" section; used by tap only, never by dist/ (tsc builds it).
 */
const swc = require('@swc/core')

const options = {
  swcrc: false,
  sourceMaps: true,
  module: { type: 'es6' },
  jsc: {
    parser: { syntax: 'typescript', tsx: false, dynamicImport: true, importAttributes: true },
    target: 'es2022',
    // tsc's own for target ES2022: class fields are defined, not assigned. Stated, so a change of swc's default cannot drift from dist/.
    transform: { useDefineForClassFields: true },
    keepClassNames: true,
    experimental: { keepImportAttributes: true, emitAssertForImportAttributes: false }
  }
}

exports.create = function create () {
  return {
    transpile (input, { fileName }) {
      const { code, map } = swc.transformSync(input, { ...options, filename: fileName })
      return { outputText: code, sourceMapText: map }
    }
  }
}
