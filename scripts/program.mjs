// How the single-file CLI runs its program: the bundle is kept as a CommonJS script text and compiled with node:vm,
// which (unlike an ES module on Node 20) accepts a V8 code cache. scripts/build.mjs writes the loader; this file holds
// the one thing the build and the code-cache step must agree on byte for byte: the script text V8 compiles.

/**
 * The name the program's script is compiled under. V8 keeps the name a code cache was made with (it shows in stack
 * traces), so the build and the loader use this same one rather than a path.
 */
export const SCRIPT_NAME = "authkeysync.mjs"

/** The script text for a CommonJS bundle: a function of Node's module wrapper arguments, in strict mode. */
export const scriptText = (bundle) =>
  `(function (exports, require, module, __filename, __dirname) {"use strict";${bundle.replace(/^#!.*\n/, "")}\n})`
