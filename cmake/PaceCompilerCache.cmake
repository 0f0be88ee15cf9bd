# ccache in front of the compiler: a one-file change rebuilds in seconds, and a fresh clone on a
# machine that built before reuses every object. The sloppiness settings let ccache cache
# translation units that use precompiled headers.
find_program(PACE_CCACHE ccache)
if(PACE_CCACHE)
  set(_pace_launcher "${CMAKE_COMMAND}" -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_CURRENT_SOURCE_DIR}" "${PACE_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_pace_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_pace_launcher})
  message(STATUS "pace-peft: ccache ${PACE_CCACHE}")
else()
  message(STATUS "pace-peft: ccache not found; rebuilds will be slower")
endif()

if(NOT PACE_OUTPUT_DIR)
  set(PACE_OUTPUT_DIR "${CMAKE_CURRENT_SOURCE_DIR}/build/Release")
endif()
