/* The value-only read of a scrape whose lines repeat the target's last scrape up to their
 * values (target.py, TargetParser._fast), in one pass over the body's UTF-8 text.
 *
 * Why C: on a real client_python body where nearly every value moves between scrapes, the
 * Python path spends ~40 us per 200 lines cutting the body into line objects and each line
 * into a token object before any number is read (str.split, str.removeprefix, the length
 * check); here no line or token object is made at all, and each value is read straight from
 * the text by PyOS_string_to_double, the function float() itself calls.
 *
 * It only ever accepts what the Python path accepts, to the same floats. Whenever it is not
 * sure it answers None (the Python path then reads the scrape, and finds any change or
 * error), or hands a token back as a str (the Python path reads that token).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

/* Per line of the layout (the ``kinds`` bytes) */
#define LITERAL 0           /* a comment or blank line: must repeat exactly */
#define SAMPLE 1            /* prefix (series and the space before the value), then the value */
#define SAMPLE_EXEMPLAR 2   /* a sample whose family allows an OpenMetrics exemplar */

/* The longest number read here; a longer one is handed back (Python reads it). */
#define MAX_NUMBER 63
/* OpenMetrics 1.0: an exemplar's label names and values hold at most 128 characters. Counted
 * here in UTF-8 bytes, never fewer than the characters: a longer one is handed back. */
#define MAX_EXEMPLAR_LABEL 128

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int lower_is(const char *s, const char *word, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != word[i])
            return 0;
    }
    return 1;
}

/* Whether s[0:n] is a number of the grammar's number branch (types._NUM):
 * [+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?) */
static int is_num(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && is_digit(s[i])) {
        i++;
        digits++;
    }
    if (digits) {
        if (i < n && s[i] == '.')
            for (i++; i < n && is_digit(s[i]); i++)
                ;
    } else {
        if (i >= n || s[i] != '.')
            return 0;
        for (i++; i < n && is_digit(s[i]); i++)
            digits++;
        if (!digits)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        Py_ssize_t exp = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (; i < n && is_digit(s[i]); i++)
            exp++;
        if (!exp)
            return 0;
    }
    return i == n;
}

/* Whether s[0:n] is a value of the grammar (types._VALUE): a number, or
 * [+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])? or [nN][aA][nN] (no sign on NaN). */
static int is_value(const char *s, Py_ssize_t n)
{
    if (n == 3 && lower_is(s, "nan", 3))
        return 1;
    Py_ssize_t sign = n > 0 && (s[0] == '+' || s[0] == '-');
    if ((n - sign == 3 && lower_is(s + sign, "inf", 3)) ||
        (n - sign == 8 && lower_is(s + sign, "infinity", 8)))
        return 1;
    return is_num(s, n);
}

/* Clinger's fast path: a decimal whose significant digits make an integer m < 2^53 and whose
 * power of ten is within 10^22 of it is m * 10^e or m / 10^-e, both operands exact doubles,
 * so one IEEE operation rounds it correctly: the double strtod (and so float()) returns.
 * 0 when the token is not of that kind (Inf, NaN, 17 significant digits, ...): strtod reads it.
 * The token must be one is_value() accepted. Exact only where doubles are evaluated in double
 * precision (FLT_EVAL_METHOD 0: x86-64's SSE2, ARM64); elsewhere strtod reads every token. */
static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int fast_number(const char *s, Py_ssize_t n, double *out)
{
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
    return 0;
#else
    Py_ssize_t i = 0;
    int negative = 0, digits = 0, point = 0, exp_digits = 0;
    uint64_t m = 0;
    long e10 = 0, exponent = 0, exp_sign = 1;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        negative = s[i++] == '-';
    for (; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            point = 1;
            continue;
        }
        if (!is_digit(c))
            break;
        if (point)
            e10--;
        if (m == 0 && c == '0')
            continue; /* a leading zero: no significant digit */
        if (++digits > 19)
            return 0; /* m might not fit in 64 bits */
        m = m * 10 + (uint64_t)(c - '0');
    }
    if (i < n) {
        if (s[i] != 'e' && s[i] != 'E')
            return 0; /* inf, nan */
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            exp_sign = s[i++] == '-' ? -1 : 1;
        for (; i < n; i++) {
            if (!is_digit(s[i]) || ++exp_digits > 4)
                return 0;
            exponent = exponent * 10 + (s[i] - '0');
        }
    }
    e10 += exp_sign * exponent;
    double v;
    if (m == 0)
        v = 0.0;
    else if (m > ((uint64_t)1 << 53) || e10 > 22 || e10 < -22)
        return 0;
    else if (e10 >= 0)
        v = (double)m * POW10[e10];
    else
        v = (double)m / POW10[-e10];
    *out = negative ? -v : v;
    return 1;
#endif
}

/* The float of a token is_value() accepted, as float() reads it; NULL with no error set when
 * it cannot be read here (too long), NULL with an error on failure. */
static PyObject *number(const char *s, Py_ssize_t n, int *too_long)
{
    char buf[MAX_NUMBER + 1];
    char *end;
    double fast;
    if (fast_number(s, n, &fast))
        return PyFloat_FromDouble(fast);
    if (n > MAX_NUMBER) {
        *too_long = 1;
        return NULL;
    }
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    /* NULL overflow_exception: an overflowing number reads as +-inf, as float("1e999") does */
    double v = PyOS_string_to_double(buf, &end, NULL);
    if (v == -1.0 && PyErr_Occurred())
        return NULL;
    if (end != buf + n) {
        *too_long = 1; /* not read whole: let Python decide (is_value should make this unreachable) */
        return NULL;
    }
    return PyFloat_FromDouble(v);
}

static int is_label_name(const char *s, Py_ssize_t n)
{
    if (n == 0 || is_digit(s[0]))
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(is_digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return !(n == 8 && memcmp(s, "__name__", 8) == 0);
}

static const char *find(const char *s, const char *end, char c)
{
    return (const char *)memchr(s, c, (size_t)(end - s));
}

/* An OpenMetrics sample's tail in its commonest shape, ``VALUE # {NAME="TEXT"} XVALUE`` or
 * ``... XVALUE XTIMESTAMP``: one label, no escape or quote in its text, no sample timestamp.
 * 1 with *value and *exemplar set; 0 (nothing set) for any other shape or doubt; -1 on error. */
static int read_exemplar(const char *s, Py_ssize_t n, PyTypeObject *exemplar_type,
                         PyObject **value, PyObject **exemplar)
{
    const char *end = s + n, *p, *name, *text, *text_end, *xv, *xv_end, *xts = NULL;
    const char *space = find(s, end, ' ');
    int too_long = 0;
    if (space == NULL || end - space < 5 || memcmp(space, " # {", 4) != 0)
        return 0;
    if (!is_value(s, space - s))
        return 0;
    name = space + 4;
    p = find(name, end, '=');
    if (p == NULL || p + 1 >= end || p[1] != '"' || !is_label_name(name, p - name))
        return 0;
    text = p + 2;
    text_end = find(text, end, '"');
    if (text_end == NULL || end - text_end < 4 || text_end[1] != '}' || text_end[2] != ' ')
        return 0;
    if (find(text, text_end, '\\') != NULL)
        return 0;
    if ((p - name) + (text_end - text) > MAX_EXEMPLAR_LABEL)
        return 0;
    xv = text_end + 3;
    xv_end = find(xv, end, ' ');
    if (xv_end != NULL) {
        xts = xv_end + 1;
        if (!is_num(xts, end - xts)) /* an exemplar timestamp: a number, no Inf or NaN */
            return 0;
    } else {
        xv_end = end;
    }
    if (!is_value(xv, xv_end - xv))
        return 0;

    PyObject *v = NULL, *xvalue = NULL, *xstamp = NULL, *label_name = NULL, *label_text = NULL;
    PyObject *pair = NULL, *labels = NULL, *ex = NULL;
    v = number(s, space - s, &too_long);
    if (v == NULL)
        goto fail;
    xvalue = number(xv, xv_end - xv, &too_long);
    if (xvalue == NULL)
        goto fail;
    if (xts != NULL) {
        xstamp = number(xts, end - xts, &too_long);
        if (xstamp == NULL)
            goto fail;
    } else {
        xstamp = Py_NewRef(Py_None);
    }
    label_name = PyUnicode_FromStringAndSize(name, p - name);
    if (label_name == NULL)
        goto fail;
    PyUnicode_InternInPlace(&label_name); /* "trace_id" once, not once per exemplar */
    label_text = PyUnicode_DecodeUTF8(text, text_end - text, "strict");
    if (label_text == NULL)
        goto fail;
    pair = PyTuple_Pack(2, label_name, label_text);
    if (pair == NULL)
        goto fail;
    labels = PyTuple_Pack(1, pair);
    if (labels == NULL)
        goto fail;
    /* Exemplar is a NamedTuple: a tuple subclass, allocated and filled as tuple.__new__ would */
    ex = exemplar_type->tp_alloc(exemplar_type, 3);
    if (ex == NULL)
        goto fail;
    PyTuple_SET_ITEM(ex, 0, labels);
    PyTuple_SET_ITEM(ex, 1, xvalue);
    PyTuple_SET_ITEM(ex, 2, xstamp);
    Py_DECREF(label_name);
    Py_DECREF(label_text);
    Py_DECREF(pair);
    *value = v;
    *exemplar = ex;
    return 1;
fail:
    Py_XDECREF(v);
    Py_XDECREF(xvalue);
    Py_XDECREF(xstamp);
    Py_XDECREF(label_name);
    Py_XDECREF(label_text);
    Py_XDECREF(pair);
    Py_XDECREF(labels);
    if (PyErr_Occurred())
        return -1;
    return 0;
}

/* What the last read of this target saw, to read a value that repeats without strtod: the
 * plain value tokens one after another, where each is (its start and length; length -1 for a
 * sample that had no plain value), and their floats. A float depends on its token alone, so an
 * equal token is the same float whatever layout the memo came from. */
typedef struct {
    Py_ssize_t start, len;
} span_t;

typedef struct {
    const char *tokens;
    Py_ssize_t tokens_size;
    const span_t *spans;
    Py_ssize_t n;
    PyObject *values; /* a tuple of at least n items */
} memo_t;

static int memo_of(PyObject *memo, memo_t *out)
{
    out->n = 0;
    if (memo == Py_None)
        return 0;
    if (!PyTuple_Check(memo) || PyTuple_GET_SIZE(memo) != 3 || !PyBytes_Check(PyTuple_GET_ITEM(memo, 0)) ||
        !PyBytes_Check(PyTuple_GET_ITEM(memo, 1)) || !PyTuple_Check(PyTuple_GET_ITEM(memo, 2))) {
        PyErr_SetString(PyExc_TypeError, "read_values: memo must be None or what read_values returned");
        return -1;
    }
    PyObject *spans = PyTuple_GET_ITEM(memo, 1);
    out->tokens = PyBytes_AS_STRING(PyTuple_GET_ITEM(memo, 0));
    out->tokens_size = PyBytes_GET_SIZE(PyTuple_GET_ITEM(memo, 0));
    out->spans = (const span_t *)PyBytes_AS_STRING(spans);
    out->values = PyTuple_GET_ITEM(memo, 2);
    out->n = PyBytes_GET_SIZE(spans) / (Py_ssize_t)sizeof(span_t);
    if (out->n > PyTuple_GET_SIZE(out->values))
        out->n = PyTuple_GET_SIZE(out->values);
    return 0;
}

/* The float the memo holds for sample k if its token was this one, else NULL (new reference). */
static PyObject *remembered(const memo_t *memo, Py_ssize_t k, const char *token, Py_ssize_t len)
{
    if (k >= memo->n)
        return NULL;
    span_t span = memo->spans[k];
    if (span.len != len || span.start < 0 || span.start > memo->tokens_size - len ||
        memcmp(memo->tokens + span.start, token, (size_t)len) != 0)
        return NULL;
    PyObject *value = PyTuple_GET_ITEM(memo->values, k);
    return PyFloat_CheckExact(value) ? Py_NewRef(value) : NULL;
}

PyDoc_STRVAR(read_values_doc,
"read_values(text, plan, kinds, n_samples, exemplar_type, memo) -> (values, odd, exemplars, memo) | None\n\n"
"``plan[i]`` is line i of the layout: the whole line for a literal line (kinds[i] == 0), the\n"
"prefix before the value for a sample line (1, or 2 where an exemplar is allowed). None when\n"
"the text has another number of lines, a literal line differs, a sample line does not start\n"
"with its prefix, or the text holds a carriage return or is no valid UTF-8. Otherwise\n"
"``values`` holds a float per sample line, or the token after the prefix as a str where it\n"
"is no plain value (its index is in ``odd``); ``exemplars`` maps sample index to the\n"
"exemplar read with its value. ``memo`` is None or the memo the last call returned: a value\n"
"whose token repeats is taken from it, not read again.");

static PyObject *read_values(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1]) ||
        !PyBytes_Check(args[2]) || !PyLong_Check(args[3]) || !PyType_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "read_values(text: str, plan: tuple, kinds: bytes, "
                                         "n_samples: int, exemplar_type: type, memo)");
        return NULL;
    }
    PyObject *plan = args[1];
    PyTypeObject *exemplar_type = (PyTypeObject *)args[4];
    Py_ssize_t n_lines = PyTuple_GET_SIZE(plan);
    Py_ssize_t n_samples = PyLong_AsSsize_t(args[3]);
    memo_t memo;
    if (n_samples == -1 && PyErr_Occurred())
        return NULL;
    if (PyBytes_GET_SIZE(args[2]) != n_lines || n_samples < 0 || n_samples > n_lines ||
        !PyType_IsSubtype(exemplar_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "read_values: kinds, n_samples or exemplar_type do not fit the plan");
        return NULL;
    }
    if (memo_of(args[5], &memo) < 0)
        return NULL;
    const char *kinds = PyBytes_AS_STRING(args[2]);
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(args[0], &size);
    if (text == NULL) { /* a lone surrogate: not a body read off the wire */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const char *end = text + size, *p = text;
    if (memchr(text, '\r', (size_t)size) != NULL)
        Py_RETURN_NONE; /* CRLF line ends: the Python path joins them */

    PyObject *values = NULL, *odd = NULL, *exemplars = NULL, *result = NULL;
    PyObject *tokens_out = NULL, *spans_out = NULL, *values_out = NULL;
    /* The new memo: every plain token is a part of the text, so the text's size bounds them */
    char *tokens = PyMem_Malloc((size_t)size + 1);
    span_t *spans = PyMem_Malloc(sizeof(span_t) * (size_t)(n_samples + 1));
    Py_ssize_t used = 0;
    if (tokens == NULL || spans == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    values = PyList_New(n_samples);
    odd = PyList_New(0);
    exemplars = PyDict_New();
    if (values == NULL || odd == NULL || exemplars == NULL)
        goto error;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n_lines; i++) {
        if (p == end)
            goto differs; /* fewer lines (a final newline opens no line) */
        const char *nl = find(p, end, '\n');
        const char *line_end = nl != NULL ? nl : end;
        Py_ssize_t line_len = line_end - p, want_len;
        const char *want = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(plan, i), &want_len);
        if (want == NULL)
            goto error;
        char kind = kinds[i];
        if (kind == LITERAL) {
            if (line_len != want_len || memcmp(p, want, (size_t)want_len) != 0)
                goto differs;
        } else {
            if (k >= n_samples || line_len < want_len || memcmp(p, want, (size_t)want_len) != 0)
                goto differs;
            const char *token = p + want_len;
            Py_ssize_t token_len = line_end - token;
            PyObject *item = remembered(&memo, k, token, token_len);
            int too_long = 0;
            spans[k].len = -1;
            if (item == NULL && is_value(token, token_len)) {
                item = number(token, token_len, &too_long);
                if (item == NULL && !too_long)
                    goto error;
            } else if (item == NULL && kind == SAMPLE_EXEMPLAR) {
                PyObject *exemplar = NULL;
                int got = read_exemplar(token, token_len, exemplar_type, &item, &exemplar);
                if (got < 0)
                    goto error;
                if (got) {
                    PyObject *key = PyLong_FromSsize_t(k);
                    int failed = key == NULL || PyDict_SetItem(exemplars, key, exemplar) < 0;
                    Py_XDECREF(key);
                    Py_DECREF(exemplar);
                    if (failed) {
                        Py_DECREF(item);
                        goto error;
                    }
                    PyList_SET_ITEM(values, k, item);
                    k++;
                    p = nl != NULL ? nl + 1 : end;
                    continue; /* not remembered: its token holds the exemplar, which changes */
                }
            }
            if (item == NULL) { /* not read here: the token itself, for the Python path */
                PyObject *index;
                item = PyUnicode_DecodeUTF8(token, token_len, "strict");
                if (item == NULL)
                    goto error;
                index = PyLong_FromSsize_t(k);
                if (index == NULL || PyList_Append(odd, index) < 0) {
                    Py_XDECREF(index);
                    Py_DECREF(item);
                    goto error;
                }
                Py_DECREF(index);
            } else {
                spans[k].start = used;
                spans[k].len = token_len;
                memcpy(tokens + used, token, (size_t)token_len);
                used += token_len;
            }
            PyList_SET_ITEM(values, k, item);
            k++;
        }
        p = nl != NULL ? nl + 1 : end;
    }
    if (p != end || k != n_samples)
        goto differs; /* more lines than the layout, or a plan that is not this layout's */
    tokens_out = PyBytes_FromStringAndSize(tokens, used);
    spans_out = PyBytes_FromStringAndSize((const char *)spans, (Py_ssize_t)sizeof(span_t) * n_samples);
    values_out = PyList_AsTuple(values);  /* its own: the caller may change the list */
    if (tokens_out == NULL || spans_out == NULL || values_out == NULL)
        goto error;
    result = Py_BuildValue("(NNN(NNN))", values, odd, exemplars, tokens_out, spans_out, values_out);
    PyMem_Free(tokens);
    PyMem_Free(spans);
    return result; /* Py_BuildValue's N took every reference, even on failure */
differs:
    PyMem_Free(tokens);
    PyMem_Free(spans);
    Py_DECREF(values);
    Py_DECREF(odd);
    Py_DECREF(exemplars);
    Py_RETURN_NONE;
error:
    PyMem_Free(tokens);
    PyMem_Free(spans);
    Py_XDECREF(values); /* unset items are NULL, which list deallocation skips */
    Py_XDECREF(odd);
    Py_XDECREF(exemplars);
    Py_XDECREF(tokens_out);
    Py_XDECREF(spans_out);
    Py_XDECREF(values_out);
    return NULL;
}

/* ---- a first scrape's label sets ------------------------------------------------------- */

#define MAX_LABELS 64 /* more in one set: handed back (Python reads it) */

typedef struct {
    const char *name, *value; /* value: raw, between the quotes */
    Py_ssize_t name_len, value_len;
    int escaped; /* the raw value holds a backslash */
} label_t;

/* ``value`` unescaped as the grammar does (backslash-backslash, backslash-n and
 * backslash-quote; any other backslash stays as written), as a str; NULL on error. */
static PyObject *unescaped(const char *s, Py_ssize_t n)
{
    char *buf = PyMem_Malloc((size_t)n + 1), *out = buf;
    PyObject *result;
    if (buf == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '\\' || s[i + 1] == 'n' || s[i + 1] == '"')) {
            *out++ = s[i + 1] == 'n' ? '\n' : s[i + 1];
            i++;
        } else {
            *out++ = s[i];
        }
    }
    result = PyUnicode_DecodeUTF8(buf, out - buf, "strict");
    PyMem_Free(buf);
    return result;
}

static int name_before(const label_t *a, const label_t *b)
{
    Py_ssize_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, (size_t)n);
    return c < 0 || (c == 0 && a->name_len < b->name_len);
}

/* Whether a bound label's value is a number, as grammar._is_number says (a value, not NaN). */
static int bound_number(const label_t *label)
{
    return !label->escaped && is_value(label->value, label->value_len) &&
           label->value[label->value_len - 1] != 'n' && label->value[label->value_len - 1] != 'N';
}

/* One ``labels}`` text in its plain shape: name="value" pairs joined by commas (0.0.4: one
 * trailing comma allowed), no blank, names valid, none twice, no __name__, then the closing
 * brace. (labels, numeric) as ``_Full.label_set`` finds them; Py_None (new reference) for any
 * other text, whether or not it is valid (Python reads it and names any error). */
static PyObject *label_set(const char *s, Py_ssize_t n, int om, PyObject *none, PyObject *le,
                           PyObject *quantile)
{
    label_t labels[MAX_LABELS];
    int count = 0;
    Py_ssize_t i = 0, end = n - 1;
    if (n < 2 || s[end] != '}')
        Py_RETURN_NONE; /* not closed, or {} (Python's path keeps its shared empty labels) */
    while (i < end) {
        label_t *label = &labels[count];
        if (count == MAX_LABELS)
            Py_RETURN_NONE;
        label->name = s + i;
        while (i < end && s[i] != '=')
            i++;
        label->name_len = s + i - label->name;
        if (!is_label_name(label->name, label->name_len) || i + 1 >= end || s[i + 1] != '"')
            Py_RETURN_NONE; /* includes __name__, an error Python names */
        i += 2;
        label->value = s + i;
        label->escaped = 0;
        while (i < end && s[i] != '"') {
            if (s[i] == '\\') {
                label->escaped = 1;
                i++; /* the escaped character, whatever it is */
            }
            i++;
        }
        if (i >= end)
            Py_RETURN_NONE; /* no closing quote before the brace */
        label->value_len = s + i - label->value;
        i++; /* the closing quote */
        for (int j = 0; j < count; j++)
            if (labels[j].name_len == label->name_len &&
                memcmp(labels[j].name, label->name, (size_t)label->name_len) == 0)
                Py_RETURN_NONE; /* a label twice: an error Python names */
        count++;
        if (i == end)
            break;
        if (s[i] != ',')
            Py_RETURN_NONE;
        i++;
        if (i == end && om)
            Py_RETURN_NONE; /* a trailing comma: an OpenMetrics error */
    }
    /* sorted by name (names are ASCII: byte order is code point order, as sorted() uses) */
    for (int a = 1; a < count; a++) {
        label_t key = labels[a];
        int b = a - 1;
        for (; b >= 0 && name_before(&key, &labels[b]); b--)
            labels[b + 1] = labels[b];
        labels[b + 1] = key;
    }
    PyObject *numeric = none;
    for (int j = 0; j < count; j++) {
        PyObject *bound = NULL;
        if (labels[j].name_len == 2 && memcmp(labels[j].name, "le", 2) == 0)
            bound = le;
        else if (labels[j].name_len == 8 && memcmp(labels[j].name, "quantile", 8) == 0)
            bound = quantile;
        if (bound != NULL && bound_number(&labels[j])) {
            if (numeric != none)
                Py_RETURN_NONE; /* both bound labels hold a number: Python's path */
            numeric = bound;
        }
    }
    PyObject *tuple = PyTuple_New(count);
    if (tuple == NULL)
        return NULL;
    for (int j = 0; j < count; j++) {
        PyObject *name = PyUnicode_FromStringAndSize(labels[j].name, labels[j].name_len), *value;
        if (name == NULL)
            goto fail;
        PyUnicode_InternInPlace(&name); /* one "route" for every label set that has one */
        value = labels[j].escaped ? unescaped(labels[j].value, labels[j].value_len)
                                  : PyUnicode_DecodeUTF8(labels[j].value, labels[j].value_len, "strict");
        if (value == NULL) {
            Py_DECREF(name);
            goto fail;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(name);
            Py_DECREF(value);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, name);
        PyTuple_SET_ITEM(pair, 1, value);
        PyTuple_SET_ITEM(tuple, j, pair);
    }
    return Py_BuildValue("(NO)", tuple, numeric);
fail:
    Py_DECREF(tuple); /* unset items are NULL, which tuple deallocation skips */
    return NULL;
}

PyDoc_STRVAR(label_sets_doc,
"label_sets(tails, om, none, le, quantile) -> list\n\n"
"For each ``labels}`` text (what follows a sample name's opening brace), (labels, numeric) as\n"
"``_Full.label_set`` finds them: labels sorted by name and unescaped; numeric ``le`` or\n"
"``quantile`` (the objects given) when that bound label holds a number, else ``none``. None\n"
"for a text of any other shape, valid or not (blanks, {}, errors): Python's path reads it.");

static PyObject *label_sets(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "label_sets(tails: list, om: bool, none, le, quantile)");
        return NULL;
    }
    int om = PyObject_IsTrue(args[1]);
    if (om < 0)
        return NULL;
    PyObject *tails = args[0];
    Py_ssize_t n = PyList_GET_SIZE(tails);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *tail = PyList_GET_ITEM(tails, k), *found;
        Py_ssize_t size;
        const char *s;
        if (!PyUnicode_Check(tail)) {
            PyErr_SetString(PyExc_TypeError, "label_sets: every tail must be a str");
            Py_DECREF(out);
            return NULL;
        }
        /* An ASCII str is its own UTF-8. Any other is encoded into a temporary: asked for
         * its UTF-8, a str keeps a copy inside it for life, and these are cache keys. */
        PyObject *encoded = NULL;
        if (PyUnicode_READY(tail) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (PyUnicode_IS_ASCII(tail)) {
            s = PyUnicode_AsUTF8AndSize(tail, &size);
        } else {
            encoded = PyUnicode_AsUTF8String(tail);
            s = encoded != NULL ? PyBytes_AS_STRING(encoded) : NULL;
            size = encoded != NULL ? PyBytes_GET_SIZE(encoded) : 0;
        }
        if (s == NULL) { /* a lone surrogate */
            PyErr_Clear();
            found = Py_NewRef(Py_None);
        } else {
            found = label_set(s, size, om, args[2], args[3], args[4]);
            Py_XDECREF(encoded);
            if (found == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        }
        PyList_SET_ITEM(out, k, found);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"read_values", (PyCFunction)(void (*)(void))read_values, METH_FASTCALL, read_values_doc},
    {"label_sets", (PyCFunction)(void (*)(void))label_sets, METH_FASTCALL, label_sets_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "The exposition parser's C helpers (see native.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
