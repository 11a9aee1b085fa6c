// interlog: an embedded, replicated, append-only event log. The package's public surface.

export * from './core/index.js'
