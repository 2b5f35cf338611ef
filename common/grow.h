/* grow.h - room for one more element in a malloc'd array that doubles as
 * it fills (the pattern of every list that is appended to here). */
#ifndef SDXL_COMMON_GROW_H
#define SDXL_COMMON_GROW_H

#include <stdlib.h>

/* Makes *items (of *cap elements of elem bytes) hold at least n + 1;
 * first_cap is the size of the first allocation. 0 on success, -1 out of
 * memory (the array is left as it was). */
static inline int sd_grow(void **items, int *cap, int n, size_t elem, int first_cap)
{
    if (n < *cap)
        return 0;
    int nc = *cap ? 2 * *cap : first_cap;
    void *p = realloc(*items, (size_t)nc * elem);
    if (!p)
        return -1;
    *items = p;
    *cap = nc;
    return 0;
}

#endif
