# For node-gyp based tooling (@electron/rebuild, `node-gyp rebuild`): the addon is
# built by CMake (CMakeLists.txt, the one list of sources) through scripts/build-native.js. It uses only
# Node-API, so the same binary loads in Node.js and Electron without a per-runtime build.
{
  "targets": [
    {
      "target_name": "pace_peft",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_build",
          "inputs": ["<(module_root_dir)/CMakeLists.txt"],
          "outputs": ["<(INTERMEDIATE_DIR)/cmake-build-always-runs.stamp"],
          "action": ["node", "<(module_root_dir)/scripts/build-native.js"]
        }
      ]
    }
  ]
}
