#!/usr/bin/env node
// Sums onnxruntime profile traces (bench --profile) by category, provider and operator, so a GPU
// run can say where a model's time goes without bringing back the traces themselves.
//   node scripts/gpu-host/profile-summary.mjs <trace.json>... [--top 25]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
for (const file of positionals) {
  const events = JSON.parse(readFileSync(file, 'utf8'));
  const runs = events.filter((event) => event.name === 'model_run');
  const groups = new Map();
  for (const event of events) {
    if (event.cat === 'Session') continue;
    // Api (GPU) events are named "<node>&<op>&<shader program>": group them by op and program.
    const api = event.cat === 'Api' ? event.name.split('&').slice(1).join(' / ') : undefined;
    const key = `${event.cat} ${event.args?.provider ?? '-'} ${api ?? event.args?.op_name ?? event.name.replace(/_\d+$/, '')}`;
    const group = groups.get(key) ?? { count: 0, us: 0 };
    group.count += 1;
    group.us += event.dur ?? 0;
    groups.set(key, group);
  }
  const runUs = runs.reduce((sum, event) => sum + event.dur, 0);
  // "Node" events are host-side kernel times; "Api" events (WebGPU) are GPU timestamps per kernel.
  const categories = new Map();
  for (const event of events) if (event.cat !== 'Session') categories.set(event.cat, (categories.get(event.cat) ?? 0) + (event.dur ?? 0));
  const perRun = (us) => `${(us / Math.max(1, runs.length) / 1000).toFixed(2)} ms/run`;
  console.log(`${basename(file)}: ${runs.length} runs, ${perRun(runUs)} (host-side model_run); totals ${[...categories].map(([cat, us]) => `${cat} ${perRun(us)}`).join(', ')}`);
  const sorted = [...groups].sort((a, b) => b[1].us - a[1].us).slice(0, Number(values.top));
  for (const [key, group] of sorted) {
    console.log(`  ${(group.us / Math.max(1, runs.length) / 1000).toFixed(3).padStart(9)} ms/run  ${String(group.count / Math.max(1, runs.length)).padStart(6)}×  ${key}`);
  }
}
