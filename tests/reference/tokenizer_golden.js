// Writes golden/tokenizers/expected.json: the ids Hugging Face tokenizers (Rust, through
// the @anush008/tokenizers Node binding) gives for TEXTS with each tokenizer.json made by
// make_tokenizer_golden.py, with and without the special tokens of the post-processor.
// Offline only: `NODE_PATH=/path/to/node_modules node tests/reference/tokenizer_golden.js`.
const {Tokenizer} = require('@anush008/tokenizers');
const fs = require('fs');
const path = require('path');
const dir = path.join(__dirname, '..', '..', 'golden', 'tokenizers');
const TEXTS = [
  'The quick brown fox jumps over the lazy dog.',
  'In 2024 there were 12345 tokens; then 678 more!!!',
  'Prices: $100, +5% (about 3.14159)... done?!',
  '1234567890 12 3 4567 0.5 1,000,000',
  '\u03b2\u00b2 3\u00b3 \u00bd \u0663\u0664\u0665 \u2460\u2461 x\u00b9\u00b2\u00b3y',
  '  leading and  double  spaces \t tabs\n\nnew lines\r\n',
  '"Quoted" text -- and \'single\' quotes... It\'s what they\'re saying',
  '<|endoftext|>after >>TITLE<< x <s>a</s> <mask> m  <mask>z',
  '\u00e9t\u00e9 na\u00efve \u4e2d\u6587\u5b57 \ud83d\ude00\ud83d\ude03 emoji',
  '\u00bf\u00a1Hola!? \u2014 \u201cquotes\u201d \u2026 \u3002\u3001 \u0964',
  'a+b=c<d>e^f|g~h`i$j',
  '',
  ' ',
  '\n',
  '999 9999 99999 1\u00b2\u00b2\u00b23',
];
(async () => {
  const out = {texts: TEXTS};
  for (const name of ['falcon', 'roberta', 'wsplit']) {
    const t = Tokenizer.fromFile(path.join(dir, name + '.json'));
    out[name] = {plain: [], special: []};
    for (const s of TEXTS) {
      out[name].plain.push((await t.encode(s, null, {addSpecialTokens: false})).getIds());
      out[name].special.push((await t.encode(s, null, {addSpecialTokens: true})).getIds());
    }
  }
  fs.writeFileSync(path.join(dir, 'expected.json'), JSON.stringify(out) + '\n');
})();
