/* advise_module.c: the Python binding of the advisor's heap scan
 * (memlens._core.advise_scan): argument check and result tuples; the scan
 * itself is advise_scan.c.  Prefix adv_. */
#include "bindings.h"
#include "advise/advise_cache.h"
#include "advise/advise_scan.h"

#include <stdlib.h>

/* ---- results ------------------------------------------------------------ */

/* The cache dicts an attribute holds, as a list (None without any). */
static PyObject *
adv_attr_caches(adv_attr *a)
{
    if (a->ncaches == 0) {
        Py_RETURN_NONE;
    }
    PyObject *list = PyList_New((Py_ssize_t)a->ncaches);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < a->ncaches; i++) {
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(a->caches[i]));
    }
    return list;
}

static PyObject *
adv_site_name(adv_site *s)
{
    if (s->name != NULL) {
        Py_INCREF(s->name);
        return s->name;
    }
    if (s->slot != NULL) {
        return PyUnicode_FromString(s->slot);
    }
    Py_RETURN_NONE;
}

static PyObject *
adv_results(adv_state *st)
{
    static const char *const site_kinds[] = {"attribute", "dict key", "list item", "elsewhere"};
    PyObject *classes = PyList_New(0), *sites = PyList_New(0), *res = NULL;
    if (classes == NULL || sites == NULL) {
        goto done;
    }
    for (size_t i = 0; i < st->nclasses; i++) {
        adv_class *c = &st->classes[i];
        PyObject *attrs = PyList_New(0);
        if (attrs == NULL) {
            goto done;
        }
        for (int j = 0; j < c->nattrs; j++) {
            adv_attr *a = &c->attrs[j];
            PyObject *name =
                a->name != NULL ? (Py_INCREF(a->name), a->name) : PyUnicode_FromString(a->slot);
            PyObject *caches = name == NULL ? NULL : adv_attr_caches(a);
            if (caches == NULL) {
                Py_XDECREF(name);
            }
            PyObject *row =
                caches == NULL
                    ? NULL
                    : Py_BuildValue(
                        "(NOnnnnnnnnN)", name, a->slot != NULL ? Py_True : Py_False,
                        (Py_ssize_t)a->present, (Py_ssize_t)a->kinds[ADV_K_INT],
                        (Py_ssize_t)a->kinds[ADV_K_FLOAT], (Py_ssize_t)a->kinds[ADV_K_BOOL],
                        (Py_ssize_t)a->kinds[ADV_K_STR], (Py_ssize_t)a->kinds[ADV_K_NONE],
                        (Py_ssize_t)a->kinds[ADV_K_OTHER], (Py_ssize_t)a->owned_boxed, caches);
            if (row == NULL || PyList_Append(attrs, row) < 0) {
                Py_XDECREF(row);
                Py_DECREF(attrs);
                goto done;
            }
            Py_DECREF(row);
        }
        PyObject *row =
            Py_BuildValue("(OnnnnNO)", (PyObject *)c->type, (Py_ssize_t)c->count,
                          (Py_ssize_t)c->bytes, (Py_ssize_t)c->weakrefd, (Py_ssize_t)c->with_dict,
                          attrs, c->overflow ? Py_True : Py_False);
        if (row == NULL || PyList_Append(classes, row) < 0) {
            Py_XDECREF(row);
            goto done;
        }
        Py_DECREF(row);
    }
    for (size_t i = 0; i < st->nsites; i++) {
        adv_site *s = &st->sites[i];
        PyObject *name = adv_site_name(s);
        PyObject *row =
            name == NULL
                ? NULL
                : Py_BuildValue("(sONnnnnnnnnnnnnnn)", site_kinds[s->kind],
                                s->type ? (PyObject *)s->type : Py_None, name,
                                (Py_ssize_t)s->dup_strs, (Py_ssize_t)s->dup_str_bytes,
                                (Py_ssize_t)s->dup_tuples, (Py_ssize_t)s->dup_tuple_bytes,
                                (Py_ssize_t)s->flists, (Py_ssize_t)s->fitems, (Py_ssize_t)s->fbytes,
                                (Py_ssize_t)s->ilists, (Py_ssize_t)s->iitems, (Py_ssize_t)s->ibytes,
                                (Py_ssize_t)s->empty, (Py_ssize_t)s->empty_bytes,
                                (Py_ssize_t)s->overalloc_lists, (Py_ssize_t)s->overalloc_bytes);
        if (row == NULL || PyList_Append(sites, row) < 0) {
            Py_XDECREF(row);
            goto done;
        }
        Py_DECREF(row);
    }
    res = PyTuple_Pack(2, classes, sites);
done:
    Py_XDECREF(classes);
    Py_XDECREF(sites);
    return res;
}

PyDoc_STRVAR(adv_scan_doc,
             "advise_scan(roots, /) -> (classes, sites)\n--\n\n"
             "Walk everything reachable from the list `roots` (normally gc.get_objects())\n"
             "and gather the advisor's statistics; the list itself is left out.");

static PyObject *
adv_scan(PyObject *module, PyObject *roots)
{
    (void)module;
    adv_state st;

    if (!PyList_CheckExact(roots)) {
        PyErr_SetString(PyExc_TypeError, "advise_scan() needs a list of roots");
        return NULL;
    }
    if (adv_scan_run(&st, roots) < 0) {
        return NULL;
    }
    PyObject *res = adv_results(&st);
    adv_scan_free(&st);
    return res;
}

PyDoc_STRVAR(adv_caches_doc,
             "advise_caches(dicts, /) -> [(values, held_only, shared, unweak, unweak_types, "
             "bytes, count)]\n--\n\n"
             "For each dict of the list `dicts`: its entries; the values only it keeps alive;\n"
             "those referenced elsewhere too; those that cannot be weakly referenced, and\n"
             "their types; the bytes and objects the held-only values retain together.");

static PyObject *
adv_caches(PyObject *module, PyObject *dicts)
{
    (void)module;
    PyObject *res = NULL;
    advc_row *rows = NULL;
    Py_ssize_t n = 0;

    if (!PyList_CheckExact(dicts)) {
        PyErr_SetString(PyExc_TypeError, "advise_caches() needs a list of dicts");
        return NULL;
    }
    n = PyList_GET_SIZE(dicts);
    rows = calloc((size_t)n + 1, sizeof(advc_row));
    if (rows == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (advc_check(dicts, rows) < 0) {
        goto done;
    }
    res = PyList_New(n);
    if (res == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        advc_row *r = &rows[i];
        PyObject *types = PyTuple_New(r->ntypes);
        if (types == NULL) {
            Py_CLEAR(res);
            goto done;
        }
        for (int j = 0; j < r->ntypes; j++) {
            Py_INCREF(r->unweak_types[j]);
            PyTuple_SET_ITEM(types, j, (PyObject *)r->unweak_types[j]);
        }
        PyObject *row = Py_BuildValue("(nnnnNnn)", (Py_ssize_t)r->values, (Py_ssize_t)r->held_only,
                                      (Py_ssize_t)r->shared, (Py_ssize_t)r->unweak, types,
                                      (Py_ssize_t)r->bytes, (Py_ssize_t)r->count);
        if (row == NULL) {
            Py_CLEAR(res);
            goto done;
        }
        PyList_SET_ITEM(res, i, row);
    }
done:
    advc_rows_free(rows, n);
    free(rows);
    return res;
}

PyDoc_STRVAR(adv_lru_parts_doc,
             "advise_lru_parts(wrapper, /) -> (dict | None, function | None)\n--\n\n"
             "The dict a functools.lru_cache / functools.cache wrapper stores its entries in\n"
             "and the function it wraps (private members, reached through the wrapper's\n"
             "tp_traverse), each None when not found.");

static PyObject *
adv_lru_parts(PyObject *module, PyObject *wrapper)
{
    (void)module;
    PyObject *d = NULL, *f = NULL;
    if (advc_lru_parts(wrapper, &d, &f) < 0) {
        return NULL;
    }
    PyObject *res = PyTuple_Pack(2, d != NULL ? d : Py_None, f != NULL ? f : Py_None);
    Py_XDECREF(d);
    Py_XDECREF(f);
    return res;
}

static PyMethodDef adv_methods[] = {
    {"advise_lru_parts", (PyCFunction)adv_lru_parts, METH_O, adv_lru_parts_doc},
    {"advise_scan", (PyCFunction)adv_scan, METH_O, adv_scan_doc},
    {"advise_caches", (PyCFunction)adv_caches, METH_O, adv_caches_doc},
    {NULL, NULL, 0, NULL},
};

int
advise_module_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, adv_methods);
}
