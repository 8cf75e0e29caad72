# Installation layout and the package files apps use to find gemstream:
#   lib/libgemstream*.so, include/gemstream/, bin/gemstream,
#   <GEMSTREAM_GST_PLUGIN_DIR>/libgstgemstream.so, share/gemstream/{config,pipelines}/,
#   lib/pkgconfig/{gemstream,gemstream-pipeline}.pc, lib/cmake/gemstream/ (find_package).
# Every path in the installed files is relative to the prefix, so `cmake --install --prefix`
# can put the tree anywhere.
include(CMakePackageConfigHelpers)

set_target_properties(gemstream PROPERTIES EXPORT_NAME gemstream INSTALL_RPATH "$ORIGIN")
set_target_properties(gemstream_backend PROPERTIES EXPORT_NAME backend INSTALL_RPATH "$ORIGIN")
set_target_properties(gemstream_pipeline PROPERTIES EXPORT_NAME pipeline INSTALL_RPATH "$ORIGIN")
file(RELATIVE_PATH _libdir_from_bindir "${CMAKE_INSTALL_FULL_BINDIR}" "${CMAKE_INSTALL_FULL_LIBDIR}")
set_target_properties(gemstream-cli PROPERTIES INSTALL_RPATH "$ORIGIN/${_libdir_from_bindir}")

install(DIRECTORY config pipelines DESTINATION ${CMAKE_INSTALL_DATADIR}/gemstream
        FILES_MATCHING PATTERN "*.json")

set(_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/gemstream)
install(EXPORT gemstreamTargets NAMESPACE gemstream:: DESTINATION ${_cmake_dir}
        FILE gemstreamTargets.cmake)
configure_package_config_file(cmake/gemstreamConfig.cmake.in
  ${PROJECT_BINARY_DIR}/gemstreamConfig.cmake INSTALL_DESTINATION ${_cmake_dir}
  PATH_VARS CMAKE_INSTALL_DATADIR)
# 0.x: minor versions may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/gemstreamConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/gemstreamConfig.cmake
              ${PROJECT_BINARY_DIR}/gemstreamConfigVersion.cmake
        DESTINATION ${_cmake_dir})

set(_pkgconfig_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH PKGCONFIG_PREFIX_FROM_PCFILEDIR "/prefix/${_pkgconfig_dir}" "/prefix")
string(REGEX REPLACE "/$" "" PKGCONFIG_PREFIX_FROM_PCFILEDIR "${PKGCONFIG_PREFIX_FROM_PCFILEDIR}")
foreach(pc gemstream gemstream-pipeline)
  configure_file(cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${_pkgconfig_dir})
endforeach()
