/* image_io.c - see image_io.h. libpng, libwebp and libjpeg(-turbo), all
 * through memory buffers so that writing stays atomic. */
#include "common/image_io.h"

#include <errno.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <webp/encode.h>

#include "common/fsutil.h"

int sd_image_format_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot)
        return -1;
    if (!strcasecmp(dot, ".png"))
        return SD_IMAGE_FORMAT_PNG;
    if (!strcasecmp(dot, ".webp"))
        return SD_IMAGE_FORMAT_WEBP;
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))
        return SD_IMAGE_FORMAT_JPEG;
    return -1;
}

/* ---- PNG ---- */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    int failed;
} membuf;

static void png_write_mem(png_structp png, png_bytep data, png_size_t len)
{
    membuf *m = png_get_io_ptr(png);
    if (m->failed)
        return;
    if (m->len + len > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 65536;
        while (nc < m->len + len)
            nc *= 2;
        uint8_t *nb = realloc(m->buf, nc);
        if (!nb) {
            m->failed = 1;
            return;
        }
        m->buf = nb;
        m->cap = nc;
    }
    memcpy(m->buf + m->len, data, len);
    m->len += len;
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

static sd_status encode_png(const uint8_t *rgb, int w, int h, const sd_image_text *text, int ntext, uint8_t **out,
                            size_t *out_len, sd_error *err)
{
    /* everything the error path frees is allocated before setjmp, so no
     * local changes between setjmp and a longjmp out of libpng */
    png_textp texts = ntext > 0 ? calloc((size_t)ntext, sizeof *texts) : NULL;
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    membuf m = {0};
    if (!png || !info || !rows || (ntext > 0 && !texts)) {
        png_destroy_write_struct(&png, &info);
        free(texts);
        free(rows);
        return sd_fail(err, SD_ERR_NOMEM, "png: out of memory");
    }
    for (int i = 0; i < ntext; i++) {
        /* iTXt keeps UTF-8 prompts intact */
        texts[i].compression = PNG_ITXT_COMPRESSION_NONE;
        texts[i].key = (png_charp)text[i].key;
        texts[i].text = (png_charp)text[i].value;
        texts[i].itxt_length = strlen(text[i].value);
    }
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(rgb + (size_t)y * w * 3);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.buf);
        free(texts);
        free(rows);
        return sd_fail(err, SD_ERR_IO, "png: encoding failed");
    }
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (ntext > 0)
        png_set_text(png, info, texts, ntext);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(texts);
    free(rows);
    if (m.failed) {
        free(m.buf);
        return sd_fail(err, SD_ERR_NOMEM, "png: out of memory");
    }
    *out = m.buf;
    *out_len = m.len;
    return SD_OK;
}

/* ---- JPEG ---- */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
} jpeg_err;

static void jpeg_die(j_common_ptr c)
{
    longjmp(((jpeg_err *)c->err)->jb, 1);
}

static sd_status encode_jpeg(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *out_len,
                             sd_error *err)
{
    struct jpeg_compress_struct c;
    jpeg_err je;
    unsigned char *mem = NULL;
    unsigned long mlen = 0;
    c.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_die;
    if (setjmp(je.jb)) {
        jpeg_destroy_compress(&c);
        free(mem);
        return sd_fail(err, SD_ERR_IO, "jpeg: encoding failed");
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &mlen);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *out = mem;
    *out_len = mlen;
    return SD_OK;
}

sd_status sd_image_encode(sd_image_format fmt, const uint8_t *rgb, int width, int height, const sd_image_text *text,
                          int ntext, int quality, uint8_t **out, size_t *out_len, sd_error *err)
{
    if (width < 1 || height < 1)
        return sd_fail(err, SD_ERR_INVALID, "image: %dx%d is empty", width, height);
    switch (fmt) {
    case SD_IMAGE_FORMAT_PNG:
        return encode_png(rgb, width, height, text, ntext, out, out_len, err);
    case SD_IMAGE_FORMAT_JPEG:
        return encode_jpeg(rgb, width, height, quality, out, out_len, err);
    case SD_IMAGE_FORMAT_WEBP: {
        uint8_t *w = NULL;
        size_t n = WebPEncodeRGB(rgb, width, height, width * 3, (float)quality, &w);
        if (!n)
            return sd_fail(err, SD_ERR_IO, "webp: encoding failed");
        /* hand back a malloc'd copy so every format is freed with free() */
        *out = malloc(n);
        if (!*out) {
            WebPFree(w);
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        }
        memcpy(*out, w, n);
        WebPFree(w);
        *out_len = n;
        return SD_OK;
    }
    }
    return sd_fail(err, SD_ERR_INVALID, "image: unknown format");
}

sd_status sd_image_write(const char *path, const uint8_t *rgb, int width, int height, const sd_image_text *text,
                         int ntext, sd_error *err)
{
    int fmt = sd_image_format_of(path);
    if (fmt < 0)
        return sd_fail(err, SD_ERR_INVALID, "%s: unknown image extension (use .png, .webp, .jpg)", path);
    uint8_t *buf;
    size_t len;
    SD_TRY(sd_image_encode((sd_image_format)fmt, rgb, width, height, text, ntext, 95, &buf, &len, err));
    sd_status st = sd_write_file_atomic(path, buf, len, err);
    free(buf);
    return st;
}

/* ---- reading ---- */
static sd_status read_png(FILE *fp, const char *path, uint8_t **rgb, int *w, int *h, sd_error *err)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile buf = NULL; /* set after setjmp: volatile keeps it valid after longjmp */
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, &info, NULL);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(buf);
        free((void *)rows);
        return sd_fail(err, SD_ERR_FORMAT, "%s: not a readable PNG", path);
    }
    png_init_io(png, fp);
    /* an init image's pixels are all we read: text chunks are skipped (a
     * compressed one can inflate to gigabytes: found by fuzz_image), and
     * what libpng may allocate for any chunk is bounded */
    static const png_byte text_chunks[] = "iTXt\0tEXt\0zTXt\0";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, text_chunks, 3);
    png_set_user_limits(png, SD_IMAGE_MAX_SIDE, SD_IMAGE_MAX_SIDE);
    png_set_chunk_cache_max(png, 128);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_read_info(png, info);
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_gray_to_rgb(png);
    png_read_update_info(png, info);
    png_uint_32 W = png_get_image_width(png, info), H = png_get_image_height(png, info);
    /* 8192: the largest size an image is generated at (--width/--height),
     * so an init image no larger is of use; a tiny file claiming more would
     * make us allocate gigabytes (found by fuzz_image) */
    if (W == 0 || H == 0 || W > SD_IMAGE_MAX_SIDE || H > SD_IMAGE_MAX_SIDE || png_get_rowbytes(png, info) != W * 3)
        png_error(png, "unsupported layout");
    buf = malloc((size_t)W * H * 3);
    rows = malloc(H * sizeof(png_bytep));
    if (!buf || !rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < H; y++)
        rows[y] = buf + (size_t)y * W * 3;
    png_read_image(png, (png_bytepp)rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free((void *)rows);
    *rgb = buf;
    *w = (int)W;
    *h = (int)H;
    return SD_OK;
}

static sd_status read_jpeg(FILE *fp, const char *path, uint8_t **rgb, int *w, int *h, sd_error *err)
{
    struct jpeg_decompress_struct c;
    jpeg_err je;
    uint8_t *volatile buf = NULL;
    c.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_die;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&c);
        free(buf);
        return sd_fail(err, SD_ERR_FORMAT, "%s: not a readable JPEG", path);
    }
    jpeg_create_decompress(&c);
    jpeg_stdio_src(&c, fp);
    jpeg_read_header(&c, TRUE);
    /* refused before libjpeg sizes its buffers for it (progressive images
     * keep whole coefficient planes) */
    if (c.image_width > SD_IMAGE_MAX_SIDE || c.image_height > SD_IMAGE_MAX_SIDE)
        longjmp(je.jb, 1);
    c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c);
    if (c.output_width > SD_IMAGE_MAX_SIDE || c.output_height > SD_IMAGE_MAX_SIDE || c.output_components != 3)
        longjmp(je.jb, 1);
    buf = malloc((size_t)c.output_width * c.output_height * 3);
    if (!buf)
        longjmp(je.jb, 1);
    while (c.output_scanline < c.output_height) {
        JSAMPROW row = buf + (size_t)c.output_scanline * c.output_width * 3;
        jpeg_read_scanlines(&c, &row, 1);
    }
    *w = (int)c.output_width;
    *h = (int)c.output_height;
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    *rgb = buf;
    return SD_OK;
}

static sd_status read_stream(FILE *fp, const char *path, uint8_t **rgb, int *width, int *height, sd_error *err)
{
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, 8, fp);
    rewind(fp);
    sd_status st;
    if (got == 8 && !png_sig_cmp(sig, 0, 8))
        st = read_png(fp, path, rgb, width, height, err);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        st = read_jpeg(fp, path, rgb, width, height, err);
    else
        st = sd_fail(err, SD_ERR_FORMAT, "%s: not a PNG or JPEG image", path);
    return st;
}

sd_status sd_image_read(const char *path, uint8_t **rgb, int *width, int *height, sd_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return sd_fail(err, SD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    sd_status st = read_stream(fp, path, rgb, width, height, err);
    fclose(fp);
    return st;
}

sd_status sd_image_decode(const void *data, size_t len, const char *name, uint8_t **rgb, int *width, int *height,
                          sd_error *err)
{
    if (len == 0)
        return sd_fail(err, SD_ERR_FORMAT, "%s: empty", name);
    FILE *fp = fmemopen((void *)data, len, "rb");
    if (!fp)
        return sd_fail(err, SD_ERR_NOMEM, "%s: %s", name, strerror(errno));
    sd_status st = read_stream(fp, name, rgb, width, height, err);
    fclose(fp);
    return st;
}
