/* Test-only shim for Wine 8, which lacks bcryptprimitives.dll.
 *
 * Rust's standard library on Windows draws random bytes from
 * bcryptprimitives.dll!ProcessPrng (present on every Windows 10+). Wine 8.0
 * does not ship that DLL, so a Rust .exe aborts at start under it. This DLL,
 * built by scripts/build-windows.sh --wine-shim and placed next to the .exe
 * only for the tests, provides ProcessPrng on top of advapi32's
 * RtlGenRandom (SystemFunction036), which Wine implements.
 *
 * Never ship it: real Windows has its own bcryptprimitives.dll.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
