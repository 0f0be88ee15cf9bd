// jest globalSetup: the suite's children and the addon read the real process environment, so settings of the
// machine running `npm test` (a CI's HF_HUB_OFFLINE or HF_TOKEN, a shell's PACE_NUM_THREADS or torchrun's RANK)
// would change what the tests test. They are removed before any test file runs; each test sets what it needs.
const removed = [
  /^HF_/,
  /^HUGGINGFACE_/,
  /^TRANSFORMERS_OFFLINE$/,
  /^PACE_(NUM_THREADS|CPU_CACHE|FUSED_EPILOGUES|DISTRIBUTED_TIMEOUT|RENDEZVOUS_FILE|LAUNCHER_PID)$/,
  /^(MASTER_ADDR|MASTER_PORT|RANK|LOCAL_RANK|WORLD_SIZE|LOCAL_WORLD_SIZE|GROUP_RANK)$/,
  /^TORCHELASTIC_/,
  /^GLOO_SOCKET_IFNAME$/,
];

module.exports = async () => {
  for (const name of Object.keys(process.env))
    if (removed.some((pattern) => pattern.test(name))) delete process.env[name];
};
