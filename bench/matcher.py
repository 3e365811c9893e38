"""Matcher benchmark: classify latency, kb load + index build time and memory at 60 / 5k / 50k questions.

The knowledge bases are synthetic but plausible shop FAQs (brand × product × topic × phrasing),
written as YAML to a temp dir and loaded through `kb.loader.load_kb`, like `kefu serve` does.
Run: `python -m bench.matcher`.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import yaml

from intents.matcher import Classifier
from intents.tokenizer import _base_dictionary
from kb.loader import load_kb

SIZES = (60, 5_000, 50_000)
QUESTIONS_PER_ENTRY = 5

BRANDS = (
    "小米",
    "华为",
    "苹果",
    "格力",
    "美的",
    "海尔",
    "联想",
    "戴尔",
    "索尼",
    "松下",
    "飞利浦",
    "九阳",
    "苏泊尔",
    "西门子",
    "三星",
    "荣耀",
    "vivo",
    "oppo",
    "大疆",
    "科沃斯",
    "方太",
    "老板",
    "奥克斯",
    "海信",
    "tcl",
)
PRODUCTS = (
    "手机",
    "蓝牙耳机",
    "电视",
    "冰箱",
    "洗衣机",
    "空调",
    "笔记本电脑",
    "平板",
    "智能手表",
    "相机",
    "电饭煲",
    "空气炸锅",
    "扫地机器人",
    "吸尘器",
    "电风扇",
    "热水器",
    "油烟机",
    "净水器",
    "微波炉",
    "路由器",
    "显示器",
    "键盘",
    "鼠标",
    "充电宝",
    "音箱",
    "电动牙刷",
    "吹风机",
    "剃须刀",
    "加湿器",
    "投影仪",
    "无人机",
    "豆浆机",
    "破壁机",
    "洗碗机",
    "烤箱",
    "电磁炉",
    "台灯",
    "体重秤",
    "门锁",
    "摄像头",
)
# (topic, phrasings) — {p} is the product.
TOPICS = (
    (
        "退货",
        (
            "{p}怎么退货",
            "{p}买了不想要了能退吗",
            "{p}七天无理由退货吗",
            "{p}退货运费谁出",
            "{p}退货流程是什么",
        ),
    ),
    (
        "保修",
        ("{p}保修多久", "{p}坏了能保修吗", "{p}保修期怎么查", "{p}过了保修期怎么办", "{p}保修需要发票吗"),
    ),
    (
        "发票",
        ("{p}能开发票吗", "{p}的发票怎么开", "{p}可以开专票吗", "{p}电子发票在哪下载", "{p}发票抬头写错了"),
    ),
    ("安装", ("{p}包安装吗", "{p}怎么预约安装", "{p}安装要收费吗", "{p}安装师傅什么时候来", "{p}自己能装吗")),
    ("发货", ("{p}什么时候发货", "{p}下单多久能发货", "{p}今天能发吗", "{p}怎么还没发货", "{p}从哪里发货")),
    ("价格", ("{p}多少钱", "{p}会降价吗", "{p}买贵了能补差价吗", "{p}有优惠吗", "{p}能便宜点吗")),
    ("使用", ("{p}怎么用", "{p}说明书在哪", "{p}开不了机怎么办", "{p}怎么连接手机", "{p}怎么恢复出厂设置")),
    (
        "配件",
        ("{p}有配件卖吗", "{p}充电器丢了怎么办", "{p}配件在哪买", "{p}原装配件多少钱", "{p}可以单买配件吗"),
    ),
    (
        "换货",
        ("{p}能换货吗", "{p}颜色选错了能换吗", "{p}换货要多久", "{p}有质量问题怎么换", "{p}换新机的条件"),
    ),
    (
        "以旧换新",
        ("{p}能以旧换新吗", "旧{p}能抵多少钱", "{p}以旧换新怎么操作", "{p}回收旧机吗", "{p}旧机上门回收吗"),
    ),
)
SPICE = ("", "请问", "你好，", "亲，", "我想问下")


def _entries(n_questions: int) -> list[dict[str, object]]:
    combos = [(b, p, t) for t in range(len(TOPICS)) for p in PRODUCTS for b in BRANDS]
    n_entries = max(1, n_questions // QUESTIONS_PER_ENTRY)
    if n_entries > len(combos):
        raise ValueError(f"at most {len(combos) * QUESTIONS_PER_ENTRY} synthetic questions")
    rng = random.Random(7)
    picked = rng.sample(combos, n_entries)
    faqs = []
    for i, (brand, product, t) in enumerate(picked):
        topic, phrasings = TOPICS[t]
        texts = [f.format(p=brand + product) for f in phrasings]
        faqs.append(
            {
                "id": f"e{i:05d}",
                "question": texts[0],
                "similar": texts[1:QUESTIONS_PER_ENTRY],
                "answer": f"您好，关于{brand}{product}的{topic}问题：请在「我的订单」中查看，或联系人工客服。",
            }
        )
    return faqs


def _queries(faqs: list[dict[str, object]], count: int = 1000) -> list[str]:
    """Paraphrase-ish queries: a kb question with a prefix and one character dropped, plus off-topic ones."""
    rng = random.Random(11)
    queries = []
    for _ in range(count * 4 // 5):
        entry = rng.choice(faqs)
        text = rng.choice([entry["question"], *entry["similar"]])  # type: ignore[list-item]
        assert isinstance(text, str)
        cut = rng.randrange(len(text))
        queries.append(rng.choice(SPICE) + text[:cut] + text[cut + 1 :])
    off_topic = ("今天天气怎么样", "你们老板是谁", "帮我订一张去北京的机票", "讲个笑话", "我要投诉", "转人工")
    queries.extend(rng.choice(off_topic) for _ in range(count - len(queries)))
    return queries


def measure(n_questions: int, folder: Path) -> dict[str, float]:
    """Load + build time, retained memory and classify p50/p99 for one synthetic kb size."""
    faqs = _entries(n_questions)
    path = folder / f"kb{n_questions}.yaml"
    path.write_text(yaml.safe_dump({"faqs": faqs}, allow_unicode=True, sort_keys=False), encoding="utf-8")

    gc.collect()
    start = time.perf_counter()
    result = load_kb([path])
    if result.kb is None:
        raise RuntimeError("; ".join(str(p) for p in result.problems[:3]))
    loaded = time.perf_counter()
    classifier = Classifier.build(result.kb)
    built = time.perf_counter()

    queries = _queries(faqs)
    for text in queries[:50]:  # warm caches the way a running gateway has them
        classifier.classify(text, memo=False)
    latencies = []
    cpu = []  # this thread's CPU time: on a busy shared machine the wall p99 measures the neighbours
    for text in queries:
        t0 = time.perf_counter_ns()
        c0 = time.thread_time_ns()
        classifier.classify(text, memo=False)
        cpu.append((time.thread_time_ns() - c0) / 1000)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    del classifier, result

    # Memory in a second pass: tracemalloc slows Python code down, so it must not touch the timings.
    gc.collect()
    tracemalloc.start()
    kb = load_kb([path]).kb
    assert kb is not None
    classifier = Classifier.build(kb)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del classifier, kb
    lat = np.asarray(latencies)
    cpu_lat = np.asarray(cpu)
    return {
        "questions": n_questions,
        "load_s": loaded - start,
        "build_s": built - loaded,
        "p50_us": float(np.percentile(lat, 50)),
        "p99_us": float(np.percentile(lat, 99)),
        "cpu_p50_us": float(np.percentile(cpu_lat, 50)),
        "cpu_p99_us": float(np.percentile(cpu_lat, 99)),
        "retained_mb": retained / 2**20,
        "peak_mb": peak / 2**20,
    }


def run(sizes: tuple[int, ...] = SIZES) -> list[str]:
    """Benchmark lines to print, one per kb size, after the one-off jieba dictionary load."""
    start = time.perf_counter()
    _base_dictionary()
    lines = [f"matcher: jieba base dictionary, once per process: {time.perf_counter() - start:.2f} s"]
    if hasattr(os, "getloadavg"):
        lines.append(f"matcher: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        for n in sizes:
            m = measure(n, Path(tmp))
            lines.append(
                f"matcher: {m['questions']:>6} questions  load {m['load_s']:.2f} s + index {m['build_s']:.2f} s"
                f" = {m['load_s'] + m['build_s']:.2f} s  classify p50 {m['p50_us']:.0f} µs p99 {m['p99_us']:.0f} µs"
                f" (cpu p50 {m['cpu_p50_us']:.0f} µs p99 {m['cpu_p99_us']:.0f} µs)"
                f"  memory {m['retained_mb']:.1f} MB retained ({m['peak_mb']:.1f} MB peak)"
            )
    return lines


if __name__ == "__main__":  # pragma: no cover
    sizes = tuple(int(a) for a in sys.argv[1:]) or SIZES
    for line in run(sizes):
        print(line, flush=True)
