// Made with: npm install apache-arrow@21.2.0 && node write.js data-00000-of-00001.arrow (Node 20); the file is committed.
// Writes an Arrow IPC stream in the layout SAELens's cache runner leaves (datasets' Array2D column named by the
// hook, token_ids), with Apache Arrow's JavaScript implementation: a writer independent of Apache.Arrow for .NET.
const arrow = require('apache-arrow');
const { Field, List, Float32, Int32, FixedSizeList, Schema, Struct, makeData, RecordBatch, RecordBatchStreamWriter, vectorFromArray } = arrow;
const hook = 'blocks.0.hook_resid_pre', context = 3, d = 4;
const value = (row, pos, k) => row * 8 + pos * 2 + k * 0.25 - 5;  // exact in float32
const inner = new List(new Field('item', new Float32(), true));
const outer = new List(new Field('item', inner, true));
const tokens = new FixedSizeList(context, new Field('item', new Int32(), true));
const features = { [hook]: { shape: [context, d], dtype: 'float32', _type: 'Array2D' },
                   token_ids: { feature: { dtype: 'int32', _type: 'Value' }, length: context, _type: 'List' } };
const fields = [
  new Field(hook, outer, true, new Map([['ARROW:extension:name', 'datasets.features.features.Array2DExtensionType'],
                                        ['ARROW:extension:metadata', `[[${context}, ${d}], "float32"]`]])),
  new Field('token_ids', tokens, true),
];
const schema = new Schema(fields, new Map([['huggingface', JSON.stringify({ info: { features } })]]));
function batch(first, rows) {
  const acts = [], ids = [];
  for (let r = first; r < first + rows; r++) {
    acts.push(Array.from({ length: context }, (_, p) => Array.from({ length: d }, (_, k) => value(r, p, k))));
    ids.push(Array.from({ length: context }, (_, p) => 100 * r + p));
  }
  const children = [vectorFromArray(acts, outer).data[0], vectorFromArray(ids, tokens).data[0]];
  return new RecordBatch(schema, makeData({ type: new Struct(fields), length: rows, nullCount: 0, children }));
}
const writer = new RecordBatchStreamWriter();
writer.write(batch(0, 3));
writer.write(batch(3, 2));
writer.finish();
require('fs').writeFileSync(process.argv[2] || 'data-00000-of-00001.arrow', writer.toUint8Array(true));
