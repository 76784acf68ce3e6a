;; read_history.clj: reads a history.edn with Clojure's own EDN reader, as Jepsen's tools do,
;; checks what Knossos and Elle expect of one (each line a map; :type one of :invoke :ok :fail
;; :info; :f a keyword; :process an integer or a keyword; each completion the one invoke its
;; process has open, of the same :f; :index 0, 1, 2...), and prints each operation back as
;; [index type f value process], one a line, for the caller to compare.
(require '[clojure.edn :as edn] '[clojure.string :as str])

(defn fail [& msg]
  (binding [*out* *err*] (println (apply str "read_history: " msg)))
  (System/exit 1))

(let [lines (remove str/blank? (str/split-lines (slurp (first *command-line-args*))))
      ops (map-indexed
           (fn [i line]
             (let [op (edn/read-string line)]
               (when-not (map? op) (fail "line " (inc i) ": not a map: " line))
               (when-not (#{:invoke :ok :fail :info} (:type op)) (fail "line " (inc i) ": :type " (:type op)))
               (when-not (keyword? (:f op)) (fail "line " (inc i) ": :f is not a keyword"))
               (when-not (or (integer? (:process op)) (keyword? (:process op)))
                 (fail "line " (inc i) ": :process " (pr-str (:process op))))
               (when-not (= i (:index op)) (fail "line " (inc i) ": :index " (:index op)))
               (when-not (integer? (:time op)) (fail "line " (inc i) ": :time " (pr-str (:time op))))
               op))
           lines)]
  (reduce (fn [open op]
            (let [p (:process op)]
              (if (= :invoke (:type op))
                (do (when (open p) (fail "process " p " invokes twice")) (assoc open p op))
                (let [inv (open p)]
                  (when-not inv (fail "index " (:index op) ": a completion without an invoke"))
                  (when-not (= (:f inv) (:f op)) (fail "index " (:index op) ": :f differs from its invoke"))
                  (dissoc open p)))))
          {} ops)
  (doseq [op ops]
    (println (pr-str [(:index op) (:type op) (:f op) (:value op) (:process op)]))))
