"""Retrieval-augmented answers over PDF pages: colqwen finds the pages, any OpenAI-compatible vision model
(vLLM, Ollama, llama.cpp server, a hosted API) reads their images and answers.

    python examples/rag_loop.py INDEX "how do I reset the firmware?" --url http://127.0.0.1:11434/v1 --model qwen2.5vl
"""
import argparse, json, urllib.request

import colqwen

p = argparse.ArgumentParser()
p.add_argument("index"), p.add_argument("question"), p.add_argument("--url", required=True)
p.add_argument("--model", required=True), p.add_argument("--key", default="none"), p.add_argument("-k", type=int, default=3)
a = p.parse_args()
hits = colqwen.Index.open(a.index).search(a.question, k=a.k)  # a folder, or http://… of a colqwen serve
content = [{"type": "text", "text": f"{a.question}\nAnswer from these pages only; cite them as (file, page)."}]
for h in hits:
    content.append({"type": "text", "text": f"{h.name}, page {h.page_num}:"})
    content.append({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + h.base64()}})
body = json.dumps({"model": a.model, "messages": [{"role": "user", "content": content}]}).encode()
req = urllib.request.Request(a.url.rstrip("/") + "/chat/completions", body,
                             {"Content-Type": "application/json", "Authorization": f"Bearer {a.key}"})
print(json.load(urllib.request.urlopen(req))["choices"][0]["message"]["content"])
