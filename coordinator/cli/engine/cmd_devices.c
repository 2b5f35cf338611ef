/* cmd_devices.c - `sdxl devices`: the compute backends of this build and the
 * devices they see (what --device accepts). */
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "kernels/backend_info.h"

int cmd_devices(int argc, char **argv)
{
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: sdxl devices\n\nLists the compute backends built in and the devices they see.\n");
        return 0;
    }
    printf("cpu      available (reference backend, fp32)\n");
    if (!sd_backend_cuda_compiled()) {
        printf("cuda     not built (nvcc was not found at build time)\n");
        return 0;
    }
    int n = sd_backend_cuda_devices();
    printf("cuda     built; %d device%s visible\n", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        char name[256];
        sd_error err = {0};
        if (sd_backend_cuda_device_name(i, name, sizeof name, &err) == SD_OK)
            printf("  cuda:%d  %s\n", i, name);
        else
            printf("  cuda:%d  (%s)\n", i, err.msg);
    }
    return 0;
}
