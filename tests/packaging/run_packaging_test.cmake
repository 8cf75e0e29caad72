# Installs the build tree into a temporary prefix, then configures, builds and runs the app in
# app/ against it twice: with find_package(gemstream) and with pkg-config.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -P run_packaging_test.cmake
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR LIBDIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "${var} is not set")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(RUN_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

# Everything `cmake --install` copies must be built (a no-op when it is).
run(${CMAKE_COMMAND} --build ${BUILD_DIR} --target gemstream gemstream_backend gemstream_pipeline
    gstgemstream gemstream-cli)

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(f include/gemstream/pipeline.h include/gemstream/pipeline_file.h
          ${LIBDIR}/libgemstream.so ${LIBDIR}/libgemstream-pipeline.so
          ${LIBDIR}/libgemstream-backend.so ${LIBDIR}/gstreamer-1.0/libgstgemstream.so
          ${LIBDIR}/pkgconfig/gemstream.pc ${LIBDIR}/pkgconfig/gemstream-pipeline.pc
          ${LIBDIR}/cmake/gemstream/gemstreamConfig.cmake
          ${LIBDIR}/cmake/gemstream/gemstreamConfigVersion.cmake
          share/gemstream/config/media_generation.json
          share/gemstream/pipelines/cover-image.json
          share/gemstream/pipelines/background-video.json
          share/gemstream/pipelines/background-loop.json bin/gemstream)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# The app runs against the installed tree only: installed data, no plugin path, a fresh
# registry, the in-process local backend.
set(run_env GEMSTREAM_DATA_DIR=${prefix}/share/gemstream GST_PLUGIN_PATH= GST_PLUGIN_PATH_1_0=
    GOOGLE_API_KEY= GEMINI_API_KEY= GEMSTREAM_BASE_URL=)
foreach(mode find_package pkg-config)
  set(app_build ${WORK_DIR}/app-${mode})
  if(mode STREQUAL "pkg-config")
    set(use_pc ON)
  else()
    set(use_pc OFF)
  endif()
  run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${prefix}/${LIBDIR}/pkgconfig
      ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/packaging/app -B ${app_build} -G ${GENERATOR}
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix} -DUSE_PKGCONFIG=${use_pc})
  message(STATUS "${mode}: ${RUN_OUTPUT}")
  run(${CMAKE_COMMAND} --build ${app_build})
  run(${CMAKE_COMMAND} -E env ${run_env} GST_REGISTRY=${WORK_DIR}/registry-${mode}.bin
      ${app_build}/cover_app "packaged owl" ${WORK_DIR}/cover-${mode}.png)
  message(STATUS "${mode} app: ${RUN_OUTPUT}")
  if(NOT RUN_OUTPUT MATCHES "plugin: ${prefix}/${LIBDIR}/gstreamer-1.0/libgstgemstream.so")
    message(FATAL_ERROR "the app did not load the installed plugin:\n${RUN_OUTPUT}")
  endif()
  file(READ ${WORK_DIR}/cover-${mode}.png magic LIMIT 4 HEX)
  if(NOT magic STREQUAL "89504e47")
    message(FATAL_ERROR "${mode}: the app did not write a PNG")
  endif()
endforeach()

# The installed CLI finds its libraries and the installed pipeline files.
run(${CMAKE_COMMAND} -E env ${run_env} ${prefix}/bin/gemstream inspect cover-image prompt=owl)
if(NOT RUN_OUTPUT MATCHES "^imagegensrc name=src prompt=\"owl\"")
  message(FATAL_ERROR "installed gemstream inspect printed:\n${RUN_OUTPUT}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
