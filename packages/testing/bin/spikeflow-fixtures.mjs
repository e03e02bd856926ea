#!/usr/bin/env node
// A committed entry so the bin links at install time, before dist/ is built.
import '../dist/cli.js';
