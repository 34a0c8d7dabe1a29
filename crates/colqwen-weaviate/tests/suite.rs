//! The one index suite (`colqwen_testkit::index_suite`) against both backends: the embedded store in a temp
//! folder, and a collection of the Weaviate node under test (`colqwen_testkit::weaviate::server`).

mod common;

mod embedded {
    use std::sync::Arc;

    use colqwen_core::PageIndex;
    use colqwen_store::Store;
    use colqwen_testkit::index_suite::Fresh;

    fn fresh(_case: &str) -> Option<Fresh> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        Some(Fresh {
            open: Box::new(move |m| Ok(Arc::new(Store::open_or_create(&path, m)?) as Arc<dyn PageIndex>)),
            guard: Box::new(dir),
        })
    }

    colqwen_testkit::index_suite!(fresh);
}

mod weaviate {
    use std::sync::Arc;

    use colqwen_core::PageIndex;
    use colqwen_testkit::index_suite::Fresh;
    use colqwen_weaviate::Weaviate;

    use crate::common;

    fn fresh(case: &str) -> Option<Fresh> {
        let addr = common::server()?;
        let config = common::config(&addr, &common::collection(case));
        let guard = common::DropCollection(config.clone());
        Some(Fresh {
            open: Box::new(move |m| Ok(Arc::new(Weaviate::open_or_create(&config, m)?) as Arc<dyn PageIndex>)),
            guard: Box::new(guard),
        })
    }

    colqwen_testkit::index_suite!(fresh);
}
