/* test_metrics.c - Prometheus' text format as proto/metrics.h writes it:
 * HELP/TYPE lines, labels, integral and fractional values, and histogram
 * buckets that are cumulative and end with +Inf = _count. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/metrics.h"

Test(metrics, families_samples_and_cumulative_histograms)
{
    sd_metrics_buf b = {0};
    sd_metrics_family(&b, "sdxl_x_total", "counter", "Things.");
    sd_metrics_sample(&b, "sdxl_x_total", "role=\"unet\"", 3);
    sd_metrics_sample(&b, "sdxl_y", NULL, 0.25);
    sd_hist h = {0};
    sd_hist_observe(&h, 0.004); /* first bucket */
    sd_hist_observe(&h, 0.3);   /* le 0.5 */
    sd_hist_observe(&h, 1000);  /* above every bound */
    sd_hist_write(&b, "sdxl_z_seconds", "stage=\"text\"", &h);
    cr_assert(!b.failed);
    cr_assert(strstr(b.text, "# HELP sdxl_x_total Things.\n# TYPE sdxl_x_total counter\n"));
    cr_assert(strstr(b.text, "sdxl_x_total{role=\"unet\"} 3\n"));
    cr_assert(strstr(b.text, "sdxl_y 0.25\n"));
    cr_assert(strstr(b.text, "sdxl_z_seconds_bucket{stage=\"text\",le=\"0.005\"} 1\n"));
    cr_assert(strstr(b.text, "sdxl_z_seconds_bucket{stage=\"text\",le=\"0.25\"} 1\n"));
    cr_assert(strstr(b.text, "sdxl_z_seconds_bucket{stage=\"text\",le=\"0.5\"} 2\n"), "cumulative");
    cr_assert(strstr(b.text, "sdxl_z_seconds_bucket{stage=\"text\",le=\"300\"} 2\n"));
    cr_assert(strstr(b.text, "sdxl_z_seconds_bucket{stage=\"text\",le=\"+Inf\"} 3\n"));
    cr_assert(strstr(b.text, "sdxl_z_seconds_count{stage=\"text\"} 3\n"));
    cr_assert(strstr(b.text, "sdxl_z_seconds_sum{stage=\"text\"} 1000.304\n"));
    sd_metrics_buf_free(&b);
}
