# ccache in front of the compiler: a one-file change rebuilds in seconds, and a fresh clone on a
# machine that built before reuses every object. The sloppiness settings let ccache cache
# translation units that use precompiled headers.
#
# The base folder (paths under it are hashed relative to the build folder) is the deepest one holding the
# sources and the Node headers cmake-js found: installed as a dependency, those headers sit in the project's
# node_modules beside the package, and a base of the package folder alone would hash their absolute path, so an
# install into another project (or another temporary folder) recompiled the whole addon.
find_program(PACE_CCACHE ccache)

function(pace_common_folder out first)
  set(common "${first}")
  foreach(folder IN LISTS ARGN)
    get_filename_component(folder "${folder}" ABSOLUTE)
    string(FIND "${folder}/" "${common}/" at)
    while(NOT at EQUAL 0 AND NOT common STREQUAL "/")
      get_filename_component(common "${common}" DIRECTORY)
      string(FIND "${folder}/" "${common}/" at)
    endwhile()
  endforeach()
  set(${out} "${common}" PARENT_SCOPE)
endfunction()

if(PACE_CCACHE)
  pace_common_folder(_pace_ccache_base "${CMAKE_CURRENT_SOURCE_DIR}" ${CMAKE_JS_INC})
  # A base of / would make system headers' paths relative too, and so depend on the build folder's depth.
  if(_pace_ccache_base STREQUAL "/")
    set(_pace_ccache_base "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  set(_pace_launcher "${CMAKE_COMMAND}" -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${_pace_ccache_base}" sh "${CMAKE_CURRENT_LIST_DIR}/ccache-launch.sh" "${PACE_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_pace_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_pace_launcher})
  message(STATUS "pace-peft: ccache ${PACE_CCACHE}")
else()
  message(STATUS "pace-peft: ccache not found; rebuilds will be slower")
endif()

if(NOT PACE_OUTPUT_DIR)
  set(PACE_OUTPUT_DIR "${CMAKE_CURRENT_SOURCE_DIR}/build/Release")
endif()
