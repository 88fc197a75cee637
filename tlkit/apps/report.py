"""Classification quality: confusion matrix, per-class precision/recall/F1, and their text forms."""
import numpy as np


def one_line(text):
    """``text`` fit for one line of a table: control characters (a newline in a folder name) escaped as
    Python writes them (\\n), everything printable, non-ASCII included, kept."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def table_cell(text):
    return one_line(text).replace("|", "\\|")


def confusion_matrix(y_true, y_pred, num_classes):
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return m


def classification_report(y_true, y_pred, class_names):
    """{"accuracy", "per_class": {name: {precision, recall, f1, support}}, "macro_f1", "confusion"}."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    per_class = {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                 for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)}
    total = int(cm.sum())
    return {"accuracy": float(tp.sum() / total) if total else 0.0, "per_class": per_class,
            "macro_f1": float(f1.mean()) if len(f1) else 0.0, "confusion": cm.tolist(), "classes": list(class_names)}


def format_report(report):
    """Plain-text table, as printed by ``tlkit evaluate``."""
    names = [one_line(n) for n in report["classes"]]
    width = max(12, max((len(n) for n in names), default=0) + 2)
    lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, key in zip(names, report["classes"]):
        r = report["per_class"][key]
        lines.append(f"{name:<{width}}{r['precision']:>10.3f}{r['recall']:>10.3f}{r['f1']:>10.3f}{r['support']:>10d}")
    lines.append(f"\naccuracy: {report['accuracy']:.4f}   macro F1: {report['macro_f1']:.4f}")
    lines.append("\nconfusion matrix (rows: true, columns: predicted)")
    cw = max(6, max((len(n) for n in names), default=0) + 1)
    lines.append(" " * width + "".join(f"{n[:cw - 1]:>{cw}}" for n in names))
    for name, row in zip(names, report["confusion"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cw}d}" for v in row))
    return "\n".join(lines)


def markdown_table(report):
    rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name in report["classes"]:
        r = report["per_class"][name]
        rows.append(f"| {table_cell(name)} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |")
    return "\n".join(rows)


def most_confused(confusion, class_names, count=5):
    """The class pairs mixed up most often: [{"true", "predicted", "count"}], largest first."""
    cm = np.asarray(confusion)
    pairs = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j]]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [{"true": class_names[i], "predicted": class_names[j], "count": c} for c, i, j in pairs[:count]]


def confidently_wrong(paths, y_true, y_pred, confidence, class_names, count=16):
    """The wrong predictions made with the highest probability: [{"path", "true", "predicted", "probability"}]."""
    wrong = [k for k in range(len(paths)) if y_true[k] != y_pred[k]]
    wrong.sort(key=lambda k: -confidence[k])
    return [{"path": str(paths[k]), "true": class_names[y_true[k]], "predicted": class_names[y_pred[k]],
             "probability": float(confidence[k])} for k in wrong[:count]]


def format_mistakes(report):
    """Text lines on the most-confused pairs and the most confidently wrong images (for the console)."""
    lines = []
    if report.get("most_confused"):
        lines.append("\nmost confused (true -> predicted: count)")
        lines += [f"  {p['true']} -> {p['predicted']}: {p['count']}" for p in report["most_confused"]]
    if report.get("confidently_wrong"):
        lines.append("\nmost confidently wrong")
        lines += [f"  {w['path']}: {w['true']} predicted as {w['predicted']} ({w['probability']:.3f})"
                  for w in report["confidently_wrong"][:5]]
    return lines
