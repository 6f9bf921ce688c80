#!/usr/bin/env node
// Runs the TypeScript CLI directly: registers tsx's ESM loader, then loads src/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
await import(new URL('../src/cli/main.ts', import.meta.url).href);
