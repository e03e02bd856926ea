#!/usr/bin/env node
// A committed entry so the bin links at install time, before dist/ is built.
import { main } from '../dist/cli.js';
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
