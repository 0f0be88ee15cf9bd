# ATen's parallel_for is an inline template whose `#pragma omp parallel` sits in ATen's headers: code compiled
# without -fopenmp runs each of its own at::parallel_for loops on one thread. So when libtorch parallelises
# with OpenMP through the system's runtime (Debian's libtorch), the core is compiled and linked with it too.
# A libtorch that bundles its own libgomp (PyTorch's wheels) is left alone: a second OpenMP runtime in the
# process would fight the first for the cores; there the core's own loops stay on one thread.
set(PACE_OPENMP OFF)
find_file(PACE_ATEN_CONFIG ATen/Config.h PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
set(_pace_aten_openmp "")
if(PACE_ATEN_CONFIG)
  file(STRINGS "${PACE_ATEN_CONFIG}" _pace_aten_openmp REGEX "#define AT_PARALLEL_OPENMP 1")
endif()
file(GLOB _pace_bundled_gomp "${TORCH_INSTALL_PREFIX}/lib/libgomp-*.so*")
if(_pace_aten_openmp AND NOT _pace_bundled_gomp)
  find_package(OpenMP COMPONENTS CXX)
  if(OpenMP_CXX_FOUND)
    set(PACE_OPENMP ON)
  endif()
endif()
message(STATUS "pace-peft: the core's own parallel loops use OpenMP: ${PACE_OPENMP}")

# Compiles `target` (and, PUBLIC, whatever links it: they share its precompiled header) with OpenMP.
function(pace_attach_openmp target)
  if(PACE_OPENMP)
    target_link_libraries(${target} PUBLIC OpenMP::OpenMP_CXX)
  endif()
endfunction()
