// Run a TF.js graph model with TF.js itself (pure-JS CPU backend) on raw float32 inputs.
// The reference for mfs_fast/identity/tfjs_graph.py; used by tests/test_tfjs_identity.py.
//   node tfjs_run.js MODEL.json INPUT.f32 N,H,W,C OUT1[,OUT2...]  > result.json
// Prints {"tfjs": version, "outputs": {name: {"shape": [...], "data": base64 float32 LE}}}.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelPath, inputPath, shapeText, outputText] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of model.weightsManifest) {
    for (const shard of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelPath), shard)));
    weightSpecs.push(...group.weights);
  }
  const joined = Buffer.concat(buffers);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  const graph = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: model.modelTopology, weightSpecs, weightData, format: model.format,
    generatedBy: model.generatedBy, convertedBy: model.convertedBy,
  }));
  const shape = shapeText.split(',').map(Number);
  const raw = fs.readFileSync(inputPath);
  const input = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), shape, 'float32');
  const names = outputText.split(',');
  let results = graph.execute(input, names);
  if (!Array.isArray(results)) results = [results];
  const outputs = {};
  for (let k = 0; k < names.length; k += 1) {
    const data = await results[k].data();
    outputs[names[k]] = { shape: results[k].shape, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
  }
  process.stdout.write(JSON.stringify({ tfjs: tf.version.tfjs, outputs }));
}

main().catch((err) => { console.error(String(err && err.stack ? err.stack : err)); process.exit(1); });
