// Validates an AsyncAPI document with the AsyncAPI parser and prints what it holds.
// Usage: node asyncapi.mjs <document>
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';

const path = process.argv[2];
const { document, diagnostics } = await new Parser().parse(await readFile(path, 'utf8'));
// Severity 0 is an error; 1 to 3 are warnings, hints and information.
const errors = diagnostics.filter((diagnostic) => diagnostic.severity === 0);
for (const diagnostic of diagnostics) {
  const where = diagnostic.path.join('.');
  console.log(`${diagnostic.severity === 0 ? 'error' : 'note'}: ${diagnostic.message} (${where})`);
}
if (errors.length > 0 || !document) {
  console.error(`${path}: ${errors.length} errors`);
  process.exit(1);
}
const messages = document.allMessages().all().map((message) => message.name());
console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.operations().length} operations, messages: ${[...new Set(messages)].join(', ')}`);
