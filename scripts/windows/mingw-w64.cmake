# CMake toolchain file for cross-building C dependencies of the Windows agent
# (librdkafka through rdkafka-sys's `cmake-build`) with Debian's mingw-w64.
# Used by scripts/build-windows.sh via CMAKE_TOOLCHAIN_FILE_x86_64_pc_windows_gnu.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_CXX_COMPILER x86_64-w64-mingw32-g++)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_AR x86_64-w64-mingw32-ar CACHE FILEPATH "")
set(CMAKE_RANLIB x86_64-w64-mingw32-ranlib CACHE FILEPATH "")
# Libraries and headers: the mingw sysroot plus the prefixes the Rust build
# scripts pass (CMAKE_PREFIX_PATH: vendored OpenSSL, zlib, zstd), never the
# Linux host's. Programs (perl, sh): the host's.
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
