"""A LangChain retriever over a colqwen index (local folder or a colqwen serve URL): each page comes back as a
Document whose content is the page image (base64 JPEG) and whose metadata says where it is from. Not a
dependency of the colqwen package: copy it, with `pip install langchain-core`.

    retriever = ColqwenRetriever(index=colqwen.Index.open("manuals-index"), k=4)
    docs = retriever.invoke("how do I reset the firmware?")
"""
from typing import Any, List

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class ColqwenRetriever(BaseRetriever):
    index: Any  # colqwen.Index or colqwen.Client
    k: int = 4

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> List[Document]:
        return [
            Document(page_content=h.base64(), metadata={"doc_id": h.doc_id, "name": h.name, "page": h.page_num,
                                                        "score": h.score, "mime_type": "image/jpeg", **h.metadata})
            for h in self.index.search(query, k=self.k)
        ]
