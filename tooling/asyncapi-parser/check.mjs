// The AsyncAPI documents of the services, read by the official parser: any diagnostic at all
// (error, warning, information or hint) fails `make lint`.
//   node tooling/asyncapi-parser/check.mjs docs/asyncapi/*.json
import { Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'information', 'hint'];
const parser = new Parser();
let failed = 0;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await fromFile(parser, file).parse();
  for (const d of diagnostics) {
    console.log(`${file}: ${SEVERITY[d.severity]} ${d.code}: ${d.message} (at ${d.path.join('.')})`);
  }
  if (!document || diagnostics.length > 0) failed += 1;
  else console.log(`${file}: valid, no diagnostics`);
}
process.exit(failed ? 1 : 0);
