/** Dependencies point one way: front ends -> core <- plugins. Core knows no engine. */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'core-knows-no-engine',
      comment: 'core imports no plugin and no front end',
      severity: 'error',
      from: { path: '^packages/core/' },
      to: { path: '^(packages/(tts|encode|face|lipsync|queue-redis|cli|server)|native)/' },
    },
    {
      name: 'plugins-only-import-core',
      comment: 'a stage plugin depends on the contract in core, never on another plugin or a front end (its tests may use other plugins to make real inputs)',
      severity: 'error',
      from: { path: '^packages/(tts|encode|face|lipsync|queue-redis)/', pathNot: '\\.test\\.ts$' },
      to: { path: '^(packages/(tts|encode|face|lipsync|queue-redis|cli|server))/', pathNot: '^packages/$1/' },
    },
    {
      name: 'front-ends-through-the-registry',
      comment: 'the CLI and the server reach engines only through the registry and the coordinator; packages/cli/src/context.ts is the one place that names the built-in packages, as strings the registry loads (tests may import engines to make real inputs)',
      severity: 'error',
      from: { path: '^packages/(cli|server)/src/', pathNot: '\\.test(-helpers)?\\.ts$' },
      to: { path: '^packages/(tts|encode|face|lipsync|queue-redis)/' },
    },
    {
      name: 'no-front-end-imports',
      comment: 'nothing but the front ends themselves imports a front end',
      severity: 'error',
      from: { pathNot: '^(packages/(cli|server)|tests)/' },
      to: { path: '^packages/(cli|server)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/|node_modules' },
    tsPreCompilationDeps: true,
    combinedDependencies: true,
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['source', 'import', 'default'], mainFields: ['main', 'types'] },
    tsConfig: { fileName: 'tsconfig.base.json' },
  },
};
