// Prompt-processing speed of llama.cpp (node-llama-cpp's prebuilt CPU binary) on a GGUF:
// for each prompt length, the median time to evaluate that many tokens of text into a fresh sequence.
import { getLlama } from "node-llama-cpp";
import { readFileSync } from "node:fs";
const [model, textFile, lengths = "1000,3000", runs = "3", threads = "2"] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never" });
const m = await llama.loadModel({ modelPath: model });
const all = m.tokenize(readFileSync(textFile, "utf8"));
for (const n of lengths.split(",").map(Number)) {
  const times = [];
  for (let r = 0; r < Number(runs); r++) {
    const ctx = await m.createContext({ contextSize: 4096, batchSize: 512, threads: Number(threads) });
    const seq = ctx.getSequence();
    const t0 = process.hrtime.bigint();
    await seq.evaluateWithoutGeneratingNewTokens(all.slice(0, n));
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await ctx.dispose();
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({ engine: "llama.cpp", tokens: n, ms_median: +med.toFixed(1), tokens_per_s: +(n / med * 1000).toFixed(1), runs: times.map(t => +t.toFixed(1)) }));
}
process.exit(0);
